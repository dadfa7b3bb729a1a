"""SQLite: claims are serialized by a short ``BEGIN IMMEDIATE`` transaction.

SQLite has one writer at a time. ``BEGIN IMMEDIATE`` takes the write lock
before the claim reads anything, so two workers can never pick the same row,
and a worker that finds the lock taken waits through the busy timeout rather
than failing on a lock upgrade. Write-ahead logging lets web requests keep
reading while a claim writes.
"""

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils.duration import duration_microseconds

CLAIM = """
    UPDATE {table} SET {assignments}
    WHERE id IN (
        SELECT id FROM {table}
        WHERE status = 'READY' AND backend = %(backend)s AND {selector}
          AND available_at <= %(now)s
        ORDER BY priority DESC, available_at, id
        LIMIT %(limit)s
    )
    RETURNING {returning}
"""

APPEND_WORKER_ID = "json_insert(worker_ids, '$[#]', %(worker_id)s)"

# The least time the runtime's connections wait for SQLite's write lock.
RUNTIME_BUSY_TIMEOUT_MS = 20_000

# The JSON columns of a claimed row, fetched as one document.
CLAIMED_PAYLOAD = (
    "json_array(json(args), json(kwargs), json(errors), json(worker_ids), "
    "json(workspace))"
)


def insert_rows(
    cursor: Any,
    table: str,
    columns: Sequence[str],
    values: Sequence[tuple],
    payload: str,
) -> None:
    """Insert rows, with UUIDs and datetimes stored as Django stores them.

    SQLite has no NOTIFY: other processes find the jobs by polling, so
    ``payload`` goes nowhere.
    """
    names = ", ".join(columns)
    placeholders = ", ".join(["%s"] * len(columns))
    cursor.executemany(
        f"INSERT INTO {table} ({names}) VALUES ({placeholders})",
        [encode_row(row) for row in values],
    )


def encode_row(row: Sequence[Any]) -> tuple:
    """Values as Django's SQLite backend stores them."""
    return tuple(map(_stored, row))


def _stored(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, timedelta):
        return duration_microseconds(value)
    if isinstance(value, datetime):
        return encode_datetime(value)
    return value


def rows(alias: str, columns: Sequence[tuple[str, str]]) -> str:
    """A relation of rows, read from one JSON array parameter."""
    selected = ", ".join(
        f"json_extract(value, '$.{name}') AS {name}" for name, _ in columns
    )
    return f"(SELECT {selected} FROM json_each(%s)) AS {alias}"


def among_ids(column: str) -> str:
    """No extra condition: SQLite already joins the JSON rows by primary key."""
    return "TRUE"


def ids_params(ids: Sequence[str]) -> list:
    return []


def encode_uuid(value: uuid.UUID) -> str:
    return value.hex


def encode_datetime(value: datetime | None) -> str | None:
    """The text Django's SQLite backend stores for a datetime."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return str(value)


def read_uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(value)


def read_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if settings.USE_TZ:
        value = value.replace(tzinfo=UTC)
    return value


@contextmanager
def claim_transaction(cursor: Any) -> Iterator[None]:
    cursor.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    cursor.execute("COMMIT")


def prepare_connection(cursor: Any) -> None:
    """Set up one of the runtime's own connections.

    Write-ahead logging (a setting of the database file) lets web requests
    read while the runtime writes. ``synchronous=NORMAL`` applies to this
    connection only: its commits (claims and outcomes) skip the fsync, which
    in WAL mode stays consistent and survives a crash of the process; an OS
    crash or power loss may undo its last few commits, so those jobs run
    again. A busy database makes the runtime wait (at least
    RUNTIME_BUSY_TIMEOUT_MS) rather than fail. Enqueues keep the project's own
    connection settings.
    """
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout")
    if cursor.fetchone()[0] < RUNTIME_BUSY_TIMEOUT_MS:
        cursor.execute(f"PRAGMA busy_timeout = {RUNTIME_BUSY_TIMEOUT_MS}")


def wake_up(cursor: Any, payload: str) -> None:
    """Nothing to send: other processes find the jobs by polling."""
