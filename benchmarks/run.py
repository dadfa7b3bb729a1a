"""Run the benchmark on SQLite and PostgreSQL and print the results side by side.

    python benchmarks/run.py [--rounds N] [--database sqlite|postgres]

Each database is measured in its own process (Django's settings are global);
PostgreSQL is reached as in the test suite (PGHOST, PGPORT, PGUSER, default
127.0.0.1:5432 as postgres) and gets a fresh ``dbqueue_bench`` database.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = [
    ("single_enqueue", "enqueue(), one job per call (jobs/s)", "{:,.0f}"),
    ("orm_create", "plain ORM create() of the same row (rows/s)", "{:,.0f}"),
    ("ratio", "enqueue() / ORM create()", "{:.2f}x"),
    ("bulk_enqueue", "bulk_enqueue() of 20,000 jobs (jobs/s)", "{:,.0f}"),
    ("drain", "drain 10,000 no-op jobs, dbqueue_worker (jobs/s)", "{:,.0f}"),
    ("drain_embedded", "drain 10,000 no-op jobs, in uvicorn (jobs/s)", "{:,.0f}"),
    ("drain_embedded_ratio", "drain in uvicorn / dbqueue_worker", "{:.2f}x"),
    ("drain_uncrowded", "drain, 200,000 other rows kept apart (jobs/s)", "{:,.0f}"),
    (
        "drain_crowded",
        "drain, 100,000 future + 100,000 finished jobs (jobs/s)",
        "{:,.0f}",
    ),
    ("drain_crowded_ratio", "drain crowded / kept apart", "{:.2f}x"),
    (
        "pickup_other_p50",
        "pickup latency, enqueued by another process, p50 (ms)",
        "{:.1f}",
    ),
    (
        "pickup_other_p99",
        "pickup latency, enqueued by another process, p99 (ms)",
        "{:.1f}",
    ),
    (
        "pickup_same_p50",
        "pickup latency, enqueued in the same process, p50 (ms)",
        "{:.1f}",
    ),
    (
        "pickup_same_p99",
        "pickup latency, enqueued in the same process, p99 (ms)",
        "{:.1f}",
    ),
    ("http_idle_p50", "HTTP GET /, queue idle, p50 (ms)", "{:.1f}"),
    ("http_idle_p99", "HTTP GET /, queue idle, p99 (ms)", "{:.1f}"),
    ("http_busy_p50", "HTTP GET /, queue busy, p50 (ms)", "{:.1f}"),
    ("http_busy_p99", "HTTP GET /, queue busy, p99 (ms)", "{:.1f}"),
    ("http_busy_ratio", "HTTP p99, busy / idle", "{:.2f}x"),
    (
        "http_busy_unreported_p99",
        "HTTP p99, busy, runtime not told of requests (ms)",
        "{:.1f}",
    ),
    (
        "http_busy_shared_loop_p99",
        "HTTP p99, busy, runtime on the server's loop (ms)",
        "{:.1f}",
    ),
    ("extra_rss_mb", "extra RSS of a web process after 10,000 jobs (MB)", "{:.1f}"),
    ("connections_per_process", "database connections of a busy web process", "{}"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="median of N rounds")
    parser.add_argument(
        "--database", choices=["sqlite", "postgres"], action="append", dest="databases"
    )
    options = parser.parse_args()
    databases = options.databases or ["sqlite", "postgres"]
    results = {database: measure(database, options.rounds) for database in databases}
    print_table(results, options.rounds)


def measure(database: str, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            "BENCH_DATABASE": database,
            "BENCH_ROUNDS": str(rounds),
            "BENCH_DB_NAME": (
                str(Path(directory) / "bench.sqlite3")
                if database == "sqlite"
                else "dbqueue_bench"
            ),
        }
        if database == "postgres":
            recreate_postgres_database(env["BENCH_DB_NAME"])
        output = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "measure.py")],
            env=env,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
    return json.loads(output.strip().splitlines()[-1])


def recreate_postgres_database(name: str) -> None:
    """Drop and create database ``name`` (the chaos suite uses this too).

    Prints the server's synchronous_commit, which the figures depend on.
    """
    import psycopg

    with psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        dbname="postgres",
        autocommit=True,
    ) as connection:
        # FORCE: a server left over by an interrupted run may still be connected.
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
        commit = connection.execute("SHOW synchronous_commit").fetchone()[0]
    print(f"PostgreSQL synchronous_commit={commit}", file=sys.stderr)


def print_table(results: dict[str, dict[str, float]], rounds: int) -> None:
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    width = max(len(label) for _, label, _ in ROWS)
    header = "".join(f"{names[database]:>14}" for database in results)
    print(f"\nMedian of {rounds} rounds\n{'':{width}}{header}")
    for key, label, form in ROWS:
        cells = "".join(
            f"{form.format(values[key]):>14}" for values in results.values()
        )
        print(f"{label:{width}}{cells}")


if __name__ == "__main__":
    main()
