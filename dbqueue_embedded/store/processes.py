"""The registry of running runtimes: one row per process, kept fresh by heartbeats."""

from datetime import timedelta
from typing import Any

from django.db import connections
from django.db.models import Count, Sum
from django.db.models.functions import Now

from ..models import WorkerProcess


def register_process(
    *,
    using: str,
    process_id: str,
    backend: str,
    mode: str,
    hostname: str,
    pid: int,
    queues: list[str],
    concurrency: int,
    connection_budget: int,
    dead_after: timedelta,
) -> None:
    WorkerProcess.objects.using(using).update_or_create(
        id=process_id,
        defaults={
            "backend": backend,
            "mode": mode,
            "hostname": hostname,
            "pid": pid,
            "queues": queues,
            "concurrency": concurrency,
            "connection_budget": connection_budget,
            "dead_after": dead_after,
            "last_heartbeat_at": Now(),
            "stopping_since": None,
        },
    )


def record_heartbeat(
    *, using: str, process_id: str, loops: dict[str, Any], metrics: dict[str, Any]
) -> bool:
    """Refresh the process row, its loops' states and its counters.

    False if the row is gone: a recovery sweep presumed the process dead and
    handed its jobs to others. The process must register again to claim.
    """
    return bool(
        WorkerProcess.objects.using(using)
        .filter(id=process_id)
        .update(last_heartbeat_at=Now(), loops=loops, metrics=metrics)
    )


def mark_stopping(*, using: str, process_id: str) -> None:
    """Record that the process began a graceful stop (its jobs show as STOPPING)."""
    WorkerProcess.objects.using(using).filter(id=process_id).update(
        stopping_since=Now()
    )


def deregister_process(*, using: str, process_id: str) -> None:
    WorkerProcess.objects.using(using).filter(id=process_id).delete()


def connection_demand(*, using: str, alive_within: timedelta) -> tuple[int, int]:
    """The processes that heartbeat lately, and the connections they may hold."""
    alive = WorkerProcess.objects.using(using).filter(
        last_heartbeat_at__gte=Now() - alive_within
    )
    totals = alive.aggregate(processes=Count("id"), budget=Sum("connection_budget"))
    return totals["processes"], totals["budget"] or 0


def connection_capacity(*, using: str) -> int | None:
    """Connections the database server accepts from ordinary roles, or None.

    PostgreSQL only: ``max_connections`` less the slots it reserves.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(setting::int * CASE WHEN name = 'max_connections' "
            "THEN 1 ELSE -1 END) FROM pg_settings WHERE name IN "
            "('max_connections', 'superuser_reserved_connections', "
            "'reserved_connections')"
        )
        return cursor.fetchone()[0]
