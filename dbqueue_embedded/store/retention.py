"""Retention: finished jobs are deleted once they are old enough.

Every runtime prunes its backend's finished jobs in small batches (see
``Runtime``), and ``manage.py dbqueue_prune`` does the same on demand.
"""

from collections.abc import Collection
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.tasks import TaskResultStatus

from ..models import Job

FINISHED = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
# Rows one prune statement deletes: short enough that SQLite's write lock is
# not held long while web requests wait for it.
PRUNE_BATCH = 500


def finished_jobs(
    *,
    using: str,
    backend: str,
    statuses: Collection[str],
    finished_before: datetime,
    task_path: str | None = None,
    queue_name: str | None = None,
) -> QuerySet[Job]:
    """The finished jobs that match, oldest first."""
    unfinished = set(statuses) - set(FINISHED)
    if unfinished:
        raise ValueError(
            f"Only finished jobs are pruned, not {', '.join(sorted(unfinished))}."
        )
    jobs = Job.objects.using(using).filter(
        backend=backend, status__in=list(statuses), finished_at__lt=finished_before
    )
    if task_path is not None:
        jobs = jobs.filter(task_path=task_path)
    if queue_name is not None:
        jobs = jobs.filter(queue_name=queue_name)
    return jobs.order_by("finished_at")


def prune_jobs(*, limit: int = PRUNE_BATCH, **filters: Any) -> int:
    """Delete up to ``limit`` of the finished jobs that match (see
    finished_jobs); return how many were deleted."""
    jobs = finished_jobs(**filters)
    ids = list(jobs.values_list("id", flat=True)[:limit])
    if not ids:
        return 0
    # Filtered again: a job retried since it was read is not finished now.
    deleted, _ = jobs.filter(id__in=ids).delete()
    return deleted
