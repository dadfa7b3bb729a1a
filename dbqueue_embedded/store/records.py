"""Values passed in and out of the store."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.tasks import TaskResultStatus
from django.tasks.base import TaskError


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to insert; ``args`` and ``kwargs`` hold plain JSON values."""

    id: uuid.UUID
    backend: str
    queue_name: str
    task_path: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    run_after: datetime | None
    available_at: datetime
    enqueued_at: datetime
    # See Job.unique_key.
    unique_key: str | None = None
    unique_until_finished: bool = False
    # See Job.concurrency_key; discard: fail at once if the key is at its limit.
    concurrency_key: str | None = None
    concurrency_limit: int = 0
    concurrency_lease: timedelta | None = None
    discard_on_conflict: bool = False
    # A named multi-step job: its name in settings.JOBS and its workspace
    # (task_path is then its first step).
    name: str = ""
    workspace: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker now holds, with the token that proves it."""

    id: uuid.UUID
    claim_token: uuid.UUID
    backend: str
    queue_name: str
    task_path: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    run_after: datetime | None
    available_at: datetime
    enqueued_at: datetime
    started_at: datetime
    last_attempted_at: datetime
    errors: list[TaskError]
    worker_ids: list[str]
    # Someone asked for the job to be cancelled before this claim.
    cancel_requested: bool = False
    # A named multi-step job: its name and workspace (task_path is the step
    # to run). "" and None for a task's job.
    name: str = ""
    workspace: dict[str, Any] | None = None

    @property
    def claim(self) -> tuple[uuid.UUID, uuid.UUID]:
        """This claim of the job: one process may hold two claims of one job
        (a timed-out attempt still running when its retry starts)."""
        return self.id, self.claim_token


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a claimed attempt ended: SUCCESSFUL, FAILED, or READY (released)."""

    job_id: uuid.UUID
    claim_token: uuid.UUID
    status: TaskResultStatus
    finished_at: datetime | None
    # Encoded JSON of the return value, or None.
    return_value_json: str | None
    # Every error of the job, including the one of this attempt.
    errors: list[TaskError]
    # For a released job: when it may be claimed again (None: at once).
    available_at: datetime | None = None
    # For a named job: the step to run next (None: unchanged) and the
    # encoded JSON of its workspace after this step (None: unchanged).
    task_path: str | None = None
    workspace_json: str | None = None
    # Encoded JSON of the attempt's last reported progress (None: unchanged).
    progress_json: str | None = None

    @property
    def claim(self) -> tuple[uuid.UUID, uuid.UUID]:
        return self.job_id, self.claim_token


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    """A running attempt's latest progress, stored only while its claim is held."""

    job_id: uuid.UUID
    claim_token: uuid.UUID
    # Encoded JSON of the progress (see results.Progress.as_json).
    progress_json: str

    @property
    def claim(self) -> tuple[uuid.UUID, uuid.UUID]:
        return self.job_id, self.claim_token
