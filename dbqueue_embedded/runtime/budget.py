"""How many database connections a process running the queue may hold.

    connections = web threads + job threads + 3 (+ 1 on PostgreSQL)

- web threads: the threads serving requests in this process (Gunicorn's
  ``threads``; 1 for sync workers and ASGI servers; 0 for ``dbqueue_worker``);
- job threads: ``concurrency``, as each running sync job may use the database;
- 3 runtime connections: claims and heartbeats, outcomes, and the thread that
  sends ``task_finished`` (its receivers may use the database);
- 1 listener connection on PostgreSQL, opened outside Django's pool.

With ``CONN_MAX_AGE = 0`` (Django's default) job threads close their
connection after each job, so this is a bound, reached when every slot runs a
job that uses the database at the same moment.
"""

from dataclasses import dataclass

RUNTIME_CONNECTIONS = 3


@dataclass(frozen=True)
class ConnectionBudget:
    web_threads: int
    job_threads: int
    listener: int

    @property
    def from_django(self) -> int:
        """Connections taken through Django (and so from its pool, if any)."""
        return self.web_threads + self.job_threads + RUNTIME_CONNECTIONS

    @property
    def total(self) -> int:
        return self.from_django + self.listener

    def __str__(self) -> str:
        listener = f" + listener {self.listener}" if self.listener else ""
        return (
            f"{self.total} = web threads {self.web_threads} + job threads "
            f"{self.job_threads} + runtime {RUNTIME_CONNECTIONS}{listener}"
        )


def connection_budget(
    *, concurrency: int, web_threads: int, vendor: str
) -> ConnectionBudget:
    return ConnectionBudget(
        web_threads=web_threads,
        job_threads=concurrency,
        listener=1 if vendor == "postgresql" else 0,
    )


def pool_size(settings_dict: dict) -> int | None:
    """The most connections Django's pool for a database holds, or None."""
    pool = settings_dict.get("OPTIONS", {}).get("pool")
    if not pool:
        return None
    options = {} if pool is True else pool
    # psycopg_pool's defaults: min_size 4, max_size = min_size.
    min_size = options.get("min_size", 4)
    return options.get("max_size") or min_size
