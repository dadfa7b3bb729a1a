"""Turning stored jobs into Django's ``TaskResult`` objects."""

import traceback
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.base import TASK_REFRESH_ATTRS, TaskError
from django.utils.module_loading import import_string

from .exceptions import UnknownTask, class_path


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """How far a running task says it has come (see ``JobContext.report_progress``)."""

    done: int
    # None when the task does not know how much there is to do.
    total: int | None
    message: str
    # When the task reported it.
    updated_at: datetime

    @property
    def fraction(self) -> float | None:
        """``done / total`` from 0.0 to 1.0, or None without a total.

        Nothing to do (a total of 0) counts as all done.
        """
        if self.total is None:
            return None
        return self.done / self.total if self.total else 1.0

    @property
    def percent(self) -> int | None:
        """The fraction as a whole percentage, rounded down: 100 only once
        everything is done."""
        if self.total is None:
            return None
        # In integers: int(0.29 * 100) would be 28.
        return self.done * 100 // self.total if self.total else 100

    def as_json(self) -> dict[str, Any]:
        """A JSON object, as the job's ``progress`` column stores it."""
        return {
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "updated_at": self.updated_at.isoformat(),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "Progress":
        return cls(
            done=value["done"],
            total=value["total"],
            message=value["message"],
            updated_at=datetime.fromisoformat(value["updated_at"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueTaskResult(TaskResult):
    """Django's ``TaskResult`` plus the job's latest ``progress`` (or None).

    ``refresh()`` and ``arefresh()`` update the progress along with what
    Django refreshes.
    """

    progress: Progress | None = None

    def refresh(self) -> None:
        """Reload the result, its progress included, from the database."""
        self._refresh_from(self.task.get_backend().get_result(self.id))

    async def arefresh(self) -> None:
        """See refresh()."""
        self._refresh_from(await self.task.get_backend().aget_result(self.id))

    def _refresh_from(self, refreshed: TaskResult) -> None:
        for attr in TASK_REFRESH_ATTRS:
            object.__setattr__(self, attr, getattr(refreshed, attr))
        object.__setattr__(self, "progress", getattr(refreshed, "progress", None))


def task_error(exc: BaseException) -> TaskError:
    """The error recorded on a job for an exception (raised or not)."""
    return TaskError(
        exception_class_path=class_path(type(exc)),
        # A NUL character, which PostgreSQL's JSON cannot hold, is written as
        # its escape: the traceback is for people to read.
        traceback="".join(traceback.format_exception(exc)).replace("\x00", "\\x00"),
    )


def import_task(task_path: str) -> Task:
    """Import the Task a job names, or raise UnknownTask saying why not."""
    try:
        task = import_string(task_path)
    except Exception as exc:  # a missing module, or one that fails to import
        raise UnknownTask(
            f"Task {task_path!r} could not be imported: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(task, Task):
        raise UnknownTask(
            f"{task_path!r} is a {type(task).__name__}, not a task; "
            "was the @task decorator removed?"
        )
    return task


def task_as_enqueued(
    task: Task,
    *,
    priority: int,
    queue_name: str,
    run_after: datetime | None,
    backend: str,
) -> Task:
    """The task with the options the job was enqueued with.

    ``Task.using()`` would validate again against today's settings; a job that
    was valid when it was enqueued must stay readable and runnable, so the
    copy is made without validation.
    """
    if (task.priority, task.queue_name, task.run_after, task.backend) == (
        priority,
        queue_name,
        run_after,
        backend,
    ):
        return task
    copy = object.__new__(type(task))
    for field in fields(task):
        object.__setattr__(copy, field.name, getattr(task, field.name))
    object.__setattr__(copy, "priority", priority)
    object.__setattr__(copy, "queue_name", queue_name)
    object.__setattr__(copy, "run_after", run_after)
    object.__setattr__(copy, "backend", backend)
    return copy


def build_result(
    task: Task,
    *,
    id: Any,
    status: TaskResultStatus | str,
    backend: str,
    args: list[Any],
    kwargs: dict[str, Any],
    enqueued_at: datetime | None,
    started_at: datetime | None = None,
    last_attempted_at: datetime | None = None,
    finished_at: datetime | None = None,
    errors: list[TaskError] | None = None,
    worker_ids: list[str] | None = None,
    return_value: Any = None,
    progress: Progress | None = None,
) -> QueueTaskResult:
    result = QueueTaskResult(
        task=task,
        id=str(id),
        status=TaskResultStatus(status),
        enqueued_at=enqueued_at,
        started_at=started_at,
        last_attempted_at=last_attempted_at,
        finished_at=finished_at,
        args=args,
        kwargs=kwargs,
        backend=backend,
        errors=list(errors or []),
        worker_ids=list(worker_ids or []),
        progress=progress,
    )
    object.__setattr__(result, "_return_value", return_value)
    return result


def result_of_job(
    task: Task,
    job: Any,
    *,
    status: TaskResultStatus | str,
    errors: list[TaskError],
    finished_at: datetime | None = None,
    return_value: Any = None,
    progress: Progress | None = None,
) -> QueueTaskResult:
    """The TaskResult of a stored job: a ``Job`` row or a claimed job."""
    return build_result(
        task_as_enqueued(
            task,
            priority=job.priority,
            queue_name=job.queue_name,
            run_after=job.run_after,
            backend=job.backend,
        ),
        id=job.id,
        status=status,
        backend=job.backend,
        args=job.args,
        kwargs=job.kwargs,
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        last_attempted_at=job.last_attempted_at,
        finished_at=finished_at,
        errors=errors,
        worker_ids=job.worker_ids,
        return_value=return_value,
        progress=progress,
    )


def result_from_job(job: Any) -> QueueTaskResult:
    """The TaskResult of a ``Job`` row (raises UnknownTask if it cannot import)."""
    from .models import BLOCKED

    return result_of_job(
        import_task(job.task_path),
        job,
        # A job waiting for its concurrency key is, to Django, waiting.
        status=TaskResultStatus.READY if job.status == BLOCKED else job.status,
        errors=[TaskError(**error) for error in job.errors],
        finished_at=job.finished_at,
        return_value=job.return_value,
        progress=None if job.progress is None else Progress.from_json(job.progress),
    )
