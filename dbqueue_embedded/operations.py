"""What an operator may do to jobs and queues: the admin's and the dashboard's
actions, one function each, and the permission each one needs.

Each operation hands the jobs to the store, on the database of their backend,
and reports what changed; a job that is not in a state the operation applies
to is left alone and counted as skipped.
"""

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.tasks import TaskResultStatus

from . import store
from .backend import DatabaseBackend, queue_backend
from .exceptions import JobNotCancellable
from .models import BLOCKED, Job
from .queues import QueueInfo
from .store import queues


@dataclass(frozen=True, slots=True)
class Done:
    """What an operation changed: ``changed`` jobs (or queues), ``skipped`` not."""

    verb: str
    changed: int
    skipped: int = 0

    def __str__(self) -> str:
        message = f"{self.verb} {self.changed}."
        if self.skipped:
            message += f" {self.skipped} left alone (not in a state this applies to)."
        return message


# The Django permission each operation needs, by operation name.
PERMISSIONS = {
    "retry": "dbqueue_embedded.change_job",
    "cancel": "dbqueue_embedded.change_job",
    "run_now": "dbqueue_embedded.change_job",
    "discard": "dbqueue_embedded.delete_job",
    "pause": "dbqueue_embedded.add_queuepause",
    "resume": "dbqueue_embedded.delete_queuepause",
}


def allowed(user: Any, operation: str) -> bool:
    """Whether ``user`` may perform ``operation`` (a key of PERMISSIONS)."""
    return user.is_active and user.has_perm(PERMISSIONS[operation])


def retry_jobs(jobs: Iterable[Job]) -> Done:
    """Put FAILED jobs back in the queue (the same job, a new attempt)."""
    return _by_backend(jobs, "Retried", store.retry_failed_jobs)


def discard_jobs(jobs: Iterable[Job]) -> Done:
    """Delete FAILED jobs."""
    return _by_backend(jobs, "Discarded", store.discard_failed_jobs)


def run_jobs_now(jobs: Iterable[Job]) -> Done:
    """Make waiting jobs (a future ``run_after`` or a retry's backoff) due now."""
    return _by_backend(jobs, "Made due now", queues.run_jobs_now)


def cancel_jobs(jobs: Iterable[Job]) -> Done:
    """Fail waiting jobs at once; ask running ones to stop (see cancel_job)."""

    def cancel(job_ids: list[uuid.UUID], *, using: str) -> list[uuid.UUID]:
        cancelled = []
        for job_id in job_ids:
            try:
                store.cancel_job(job_id, using=using)
            except (Job.DoesNotExist, JobNotCancellable):
                continue
            cancelled.append(job_id)
        return cancelled

    return _by_backend(jobs, "Cancelled", cancel)


def pause_queue(backend: str, queue_name: str) -> bool:
    """Pause a queue of ``backend``; False if it was paused already.

    Raises ValueError for a backend that is not this queue's, or a queue
    name it does not allow (see ``queue_to_pause``).
    """
    return queue_to_pause(backend, queue_name).pause()


def resume_queue(backend: str, queue_name: str) -> bool:
    """Resume a queue of ``backend``; False if it was not paused.

    Raises ValueError for a backend that is not this queue's, or a name that
    cannot be a queue's.
    """
    return _queue(backend, queue_name).resume()


def queue_to_pause(backend: str, queue_name: str) -> QueueInfo:
    """The queue, if it may be paused: one of the backend's ``QUEUES`` (when
    it names any); ValueError saying why not otherwise."""
    queue = _queue(backend, queue_name)
    allowed = queue.backend.queues
    if allowed and queue_name not in allowed:
        raise ValueError(
            f"Backend {backend!r} has no queue {queue_name!r}; its QUEUES are "
            f"{', '.join(sorted(allowed))}."
        )
    return queue


def _queue(backend: str, queue_name: str) -> QueueInfo:
    if _configured_backend(backend) is None:
        raise ValueError(f"{backend!r} is not a task backend of dbqueue_embedded.")
    return QueueInfo(queue_name, backend)  # ValueError for a bad name


def _by_backend(
    jobs: Iterable[Job],
    verb: str,
    change: Callable[..., list[uuid.UUID]],
) -> Done:
    by_backend: dict[str, list[uuid.UUID]] = {}
    for job in jobs:
        by_backend.setdefault(job.backend, []).append(job.id)
    changed = skipped = 0
    for alias, job_ids in by_backend.items():
        backend = _configured_backend(alias)
        if backend is None:
            skipped += len(job_ids)
            continue
        done = len(change(job_ids, using=backend.database))
        changed += done
        skipped += len(job_ids) - done
    return Done(verb, changed, skipped)


def _configured_backend(alias: str) -> DatabaseBackend | None:
    """The backend of that alias, or None for jobs of a backend since removed."""
    try:
        return queue_backend(alias)
    except ImproperlyConfigured:  # Django's InvalidTaskBackend is one too
        return None


# Job statuses each job operation applies to (for offering it on a row).
APPLIES_TO = {
    "retry": {TaskResultStatus.FAILED},
    "discard": {TaskResultStatus.FAILED},
    "cancel": {TaskResultStatus.READY, BLOCKED, TaskResultStatus.RUNNING},
    "run_now": {TaskResultStatus.READY},
}
