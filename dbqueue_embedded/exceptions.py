"""Exceptions recorded on jobs or raised to callers."""


class UnknownTask(ImportError):
    """A job's task path no longer points at a task in this process."""


class JobInterrupted(Exception):
    """An attempt that was cut short and handed back to the queue.

    Recorded when a stopping process releases a job it could not finish.
    """


class WorkerLost(JobInterrupted):
    """An attempt whose process stopped heartbeating (killed, crashed, cut off).

    Recorded by the recovery sweep of another process, which hands the job
    back to the queue.
    """


class JobQuarantined(WorkerLost):
    """A job whose attempts kept dying with their process, failed for good."""


class JobTimeout(TimeoutError):
    """An attempt that ran longer than its task's ``timeout``."""


class JobCancelled(Exception):
    """An attempt stopped, or a job failed, because cancellation was requested."""


class JobNotCancellable(Exception):
    """The job has already finished: there is nothing left to cancel."""


class JobNotFailed(Exception):
    """Only a FAILED job can be retried or discarded."""


class JobDiscarded(Exception):
    """A job not run because its concurrency key was at its limit when it was
    enqueued (``on_conflict="discard"``)."""


class InvalidJob(ValueError):
    """A named job that cannot be created as given: nothing was created."""


class CreationHookFailed(Exception):
    """A named job's creation hook raised: nothing was created."""


def class_path(cls: type) -> str:
    """The dotted path under which errors of ``cls`` are recorded on jobs."""
    return f"{cls.__module__}.{cls.__qualname__}"


# Errors of attempts that died with their process (for quarantine).
LOST_ATTEMPT_ERRORS = frozenset(map(class_path, (WorkerLost, JobQuarantined)))
# Errors of attempts the task did not fail itself: they do not count towards
# its max_attempts.
NOT_FAILURE_ERRORS = LOST_ATTEMPT_ERRORS | frozenset(
    map(class_path, (JobInterrupted, UnknownTask))
)
