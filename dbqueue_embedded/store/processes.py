"""The registry of running runtimes: one row per process, kept fresh by heartbeats."""

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
            "last_heartbeat_at": Now(),
        },
    )


def record_heartbeat(*, using: str, process_id: str) -> bool:
    """Refresh the process row; False if the row is gone."""
    return bool(
        WorkerProcess.objects.using(using)
        .filter(id=process_id)
        .update(last_heartbeat_at=Now())
    )


def deregister_process(*, using: str, process_id: str) -> None:
    WorkerProcess.objects.using(using).filter(id=process_id).delete()
