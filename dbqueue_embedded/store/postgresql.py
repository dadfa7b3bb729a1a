"""PostgreSQL: a claim is one statement that locks with ``FOR UPDATE SKIP LOCKED``.

Concurrent workers never wait for each other: each skips the rows another
worker is claiming at that moment.
"""

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ..wakeups import CHANNEL

CLAIM = """
    WITH picked AS MATERIALIZED (
        SELECT id FROM {table}
        WHERE status = 'READY' AND backend = %(backend)s AND {selector}
          AND available_at <= %(now)s
        ORDER BY priority DESC, available_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE {table} SET {assignments}
    FROM picked
    WHERE {table}.id = picked.id
    RETURNING {returning}
"""

APPEND_WORKER_ID = "worker_ids || jsonb_build_array(%(worker_id)s::varchar)"

# The JSON columns of a claimed row, fetched as one document.
CLAIMED_PAYLOAD = "jsonb_build_array(args, kwargs, errors, worker_ids, workspace)"


def insert_rows(
    cursor: Any,
    table: str,
    columns: Sequence[str],
    values: Sequence[tuple],
    payload: str,
) -> None:
    """Insert rows and NOTIFY listeners with ``payload`` once they commit.

    One row goes in one round trip with its NOTIFY; many go by ``COPY``, far
    cheaper per row, in the caller's transaction.
    """
    names = ", ".join(columns)
    if len(values) == 1:
        placeholders = ", ".join(["%s"] * len(columns))
        cursor.execute(
            f"INSERT INTO {table} ({names}) VALUES ({placeholders}); "
            "SELECT pg_notify(%s, %s)",
            [*values[0], CHANNEL, payload],
        )
        return
    with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in values:
            copy.write_row(row)
    wake_up(cursor, payload)


def encode_row(row: Sequence[Any]) -> Sequence[Any]:
    """Values as psycopg sends them: unchanged."""
    return row


def rows(alias: str, columns: Sequence[tuple[str, str]]) -> str:
    """A relation of typed rows, read from one JSON array parameter.

    "json" columns are JSON values, read as ``jsonb``; "jsonb" columns are
    JSON encoded as text, cast to ``jsonb``.
    """
    types = {"json": "jsonb", "jsonb": "text"}
    fields = ", ".join(f"{name} {types.get(type_, type_)}" for name, type_ in columns)
    selected = ", ".join(
        f"{name}::jsonb AS {name}" if type_ == "jsonb" else name
        for name, type_ in columns
    )
    source = f"jsonb_to_recordset(%s::jsonb) AS r({fields})"
    return f"(SELECT {selected} FROM {source}) AS {alias}"


def among_ids(column: str) -> str:
    """A condition true for the ids passed as one parameter.

    A JSON document gives the planner no row count; this array does, so a
    join on it uses the primary key whatever the table's statistics say.
    """
    return f"{column} = ANY(%s::uuid[])"


def ids_params(ids: Sequence[str]) -> list:
    return [list(ids)]


def encode_uuid(value: uuid.UUID) -> str:
    return str(value)


def encode_datetime(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def read_uuid(value: Any) -> uuid.UUID:
    return value


def read_datetime(value: Any) -> datetime | None:
    return value


@contextmanager
def claim_transaction(cursor: Any) -> Iterator[None]:
    # Each claim statement is atomic on its own under autocommit.
    yield


def prepare_connection(cursor: Any) -> None:
    """Nothing to set up: commits stay as durable as the server is configured."""


def wake_up(cursor: Any, payload: str) -> None:
    """NOTIFY listeners with ``payload`` once the transaction commits."""
    cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])
