"""Queue control: pause, resume and clear a queue; run waiting jobs now; a
queue's size and latency.

A pause is a row that every claim checks (see ``claim_statement``), so a
paused queue is skipped by every process from its next claim on. Enqueueing
into a paused queue still works; its jobs wait until it is resumed.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Q
from django.db.models.functions import Now
from django.tasks import TaskResultStatus
from django.utils import timezone

from ..models import BLOCKED, Job, QueuePause
from . import concurrency
from .jobs import wake_up


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue, as counted at ``counted_at``."""

    name: str
    # Jobs that may run now, and jobs waiting for their run_after (or a
    # retry's backoff).
    ready: int
    scheduled: int
    running: int
    # Jobs waiting for their concurrency key to free up.
    blocked: int
    # When the oldest job that may run now became runnable; None if none.
    oldest_ready_at: datetime | None
    paused: bool
    counted_at: datetime

    @property
    def latency(self) -> timedelta:
        """How long the oldest job that may run now has waited (0 if none)."""
        if self.oldest_ready_at is None:
            return timedelta(0)
        return max(timedelta(0), self.counted_at - self.oldest_ready_at)


def pause_queue(*, using: str, backend: str, queue_name: str) -> bool:
    """Pause a queue; False if it was paused already."""
    try:
        with transaction.atomic(using=using):
            QueuePause.objects.using(using).create(
                backend=backend, queue_name=queue_name
            )
    except IntegrityError:
        return False
    return True


def resume_queue(*, using: str, backend: str, queue_name: str) -> bool:
    """Resume a queue and wake the runtimes; False if it was not paused."""
    with transaction.atomic(using=using):
        deleted, _ = (
            QueuePause.objects.using(using)
            .filter(backend=backend, queue_name=queue_name)
            .delete()
        )
        if deleted:
            wake_up([(backend, queue_name)], using=using)
    return bool(deleted)


def clear_queue(*, using: str, backend: str, queue_name: str) -> int:
    """Delete the queue's jobs that wait to run; return how many.

    Running jobs are left to finish. Concurrency leases of the deleted jobs go
    to the next jobs of their keys.
    """
    waiting = Job.objects.using(using).filter(
        backend=backend,
        queue_name=queue_name,
        status__in=[TaskResultStatus.READY, BLOCKED],
    )
    with transaction.atomic(using=using):
        ids = list(waiting.values_list("id", flat=True))
        deleted, _ = waiting.filter(id__in=ids).delete()
        concurrency.release_leases(ids, using=using)
    return deleted


def run_jobs_now(job_ids: Sequence[uuid.UUID], *, using: str) -> list[uuid.UUID]:
    """Make READY jobs that wait for a later time (their run_after, a retry's
    backoff) due now; return their ids. Other jobs are left as they are.

    ``run_after`` keeps what the caller asked for; only the time the job may
    be claimed changes.
    """
    jobs = Job.objects.using(using).filter(
        id__in=job_ids, status=TaskResultStatus.READY, available_at__gt=Now()
    )
    with transaction.atomic(using=using):
        rows = list(jobs.select_for_update().values_list("id", "backend", "queue_name"))
        jobs.filter(id__in=[row[0] for row in rows]).update(available_at=Now())
        wake_up([(row[1], row[2]) for row in rows], using=using)
    return [row[0] for row in rows]


def queue_stats(
    *, using: str, backend: str, queue_names: list[str] | None = None
) -> list[QueueStats]:
    """Every queue with waiting or running jobs, or paused; or just ``queue_names``."""
    now = timezone.now()
    ready = Q(status=TaskResultStatus.READY, available_at__lte=now)
    active = Job.objects.using(using).filter(
        backend=backend,
        status__in=[TaskResultStatus.READY, TaskResultStatus.RUNNING, BLOCKED],
    )
    pauses = QueuePause.objects.using(using).filter(backend=backend)
    if queue_names is not None:
        active = active.filter(queue_name__in=queue_names)
        pauses = pauses.filter(queue_name__in=queue_names)
    counts = {
        row["queue_name"]: row
        for row in active.values("queue_name").annotate(
            ready=Count("id", filter=ready),
            scheduled=Count(
                "id", filter=Q(status=TaskResultStatus.READY, available_at__gt=now)
            ),
            running=Count("id", filter=Q(status=TaskResultStatus.RUNNING)),
            blocked=Count("id", filter=Q(status=BLOCKED)),
            oldest_ready_at=Min("available_at", filter=ready),
        )
    }
    paused = set(pauses.values_list("queue_name", flat=True))
    names = set(counts) | paused | set(queue_names or ())
    stats = []
    for name in sorted(names):
        row = counts.get(name, {})
        stats.append(
            QueueStats(
                name=name,
                ready=row.get("ready", 0),
                scheduled=row.get("scheduled", 0),
                running=row.get("running", 0),
                blocked=row.get("blocked", 0),
                oldest_ready_at=row.get("oldest_ready_at"),
                paused=name in paused,
                counted_at=now,
            )
        )
    return stats
