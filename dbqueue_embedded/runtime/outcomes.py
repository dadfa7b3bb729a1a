"""How an attempt's end becomes the job's next state: done, retried, released, failed.

Only errors of attempts that the task itself failed count towards its
``max_attempts``; attempts cut short by a stopping or dying process, and
claims by processes that could not import the task, do not.
"""

import random
from datetime import timedelta

from django.tasks import Task, TaskResultStatus
from django.tasks.base import TaskError
from django.utils import timezone

from ..exceptions import (
    NOT_FAILURE_ERRORS,
    JobCancelled,
    JobInterrupted,
    UnknownTask,
    class_path,
)
from ..results import task_error
from ..store import ClaimedJob, Outcome
from ..task import QueueTask

# The longest wait before another process gets a job this one cannot import.
UNKNOWN_TASK_MAX_DELAY = 60.0


def failed_attempts(job: ClaimedJob) -> int:
    """Attempts of the job that the task failed, before this one."""
    return sum(
        error.exception_class_path not in NOT_FAILURE_ERRORS for error in job.errors
    )


def failure_outcome(job: ClaimedJob, task: Task | None, exc: BaseException) -> Outcome:
    """FAILED, or READY again later if the task's retry options allow."""
    errors = [*job.errors, task_error(exc)]
    failures = failed_attempts(job) + 1
    if (
        isinstance(task, QueueTask)
        and failures < task.max_attempts
        and isinstance(exc, task.retry_on)
        and not isinstance(exc, JobCancelled)
    ):
        delay = task.retry_backoff(failures)
        return _released(job, errors, delay)
    return Outcome(
        job_id=job.id,
        claim_token=job.claim_token,
        status=TaskResultStatus.FAILED,
        finished_at=timezone.now(),
        return_value_json=None,
        errors=errors,
    )


def released_outcome(job: ClaimedJob, reason: str) -> Outcome:
    """Hand the job back to the queue, recording the cut-short attempt."""
    return _released(job, [*job.errors, task_error(JobInterrupted(reason))], 0)


def unknown_task_outcome(
    job: ClaimedJob, exc: UnknownTask, max_releases: int
) -> Outcome:
    """Release a job whose task this process cannot import, a bounded number of times.

    During a rolling deploy a job of a new task can reach a process still
    running the old code: it goes back to the queue for a process that knows
    the task, with a growing delay, and fails only after ``max_releases``.
    """
    unknown = class_path(UnknownTask)
    releases = 1 + sum(e.exception_class_path == unknown for e in job.errors)
    if releases > max_releases:
        return failure_outcome(job, None, exc)
    exc.add_note(
        f"Released for a process that can import it ({releases} of {max_releases})."
    )
    delay = min(UNKNOWN_TASK_MAX_DELAY, 2.0 ** (releases - 1))
    return _released(
        job, [*job.errors, task_error(exc)], random.uniform(delay / 2, delay)
    )


def _released(job: ClaimedJob, errors: list[TaskError], delay: float) -> Outcome:
    return Outcome(
        job_id=job.id,
        claim_token=job.claim_token,
        status=TaskResultStatus.READY,
        finished_at=None,
        return_value_json=None,
        errors=errors,
        available_at=timezone.now() + timedelta(seconds=delay) if delay else None,
    )
