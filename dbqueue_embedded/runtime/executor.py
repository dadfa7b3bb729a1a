"""Running one claimed job: sync tasks in the job threads, async ones on the loop.

An attempt ends in exactly one outcome, handed to the completer; its slot is
free as soon as the task has returned. Anything the task raises
(``SystemExit`` included) fails the job with its traceback and leaves the
runtime running.

``task_started`` is sent just before the task runs. ``task_finished`` is sent
from the runtime's signal thread once the outcome is durable, and only if the
claim was still held when it was written: a receiver that reads the result
sees what it was told. Slow receivers delay other signals, never jobs.
"""

import asyncio
import json
import logging
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from inspect import iscoroutinefunction
from typing import Any

from django.db import close_old_connections
from django.tasks import Task, TaskContext, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.signals import task_finished, task_started
from django.utils import timezone

from .. import payloads
from ..exceptions import JobInterrupted, UnknownTask
from ..results import import_task, result_of_job
from ..store import ClaimedJob, Outcome
from .completer import OnWritten
from .web_activity import WebActivity

logger = logging.getLogger(__name__)


def task_error(exc: BaseException) -> TaskError:
    exc_type = type(exc)
    return TaskError(
        exception_class_path=f"{exc_type.__module__}.{exc_type.__qualname__}",
        traceback="".join(traceback.format_exception(exc)),
    )


def failed_outcome(job: ClaimedJob, exc: BaseException) -> Outcome:
    return Outcome(
        job_id=job.id,
        claim_token=job.claim_token,
        status=TaskResultStatus.FAILED,
        finished_at=timezone.now(),
        return_value_json=None,
        errors=[*job.errors, task_error(exc)],
    )


def released_outcome(job: ClaimedJob, reason: str) -> Outcome:
    """Hand the job back to the queue, recording the cut-short attempt."""
    return Outcome(
        job_id=job.id,
        claim_token=job.claim_token,
        status=TaskResultStatus.READY,
        finished_at=None,
        return_value_json=None,
        errors=[*job.errors, task_error(JobInterrupted(reason))],
    )


class Attempt:
    """One execution of a claimed job and how it ended."""

    def __init__(self, job: ClaimedJob, task: Task) -> None:
        self.job = job
        self.task = task
        self.result = result_of_job(
            task, job, status=TaskResultStatus.RUNNING, errors=job.errors
        )
        self.outcome: Outcome | None = None
        # What the task raised, kept to send task_finished with its traceback.
        self.exception: BaseException | None = None

    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        args = list(self.result.args)
        if self.task.takes_context:
            args.insert(0, TaskContext(task_result=self.result))
        return args, self.result.kwargs

    def succeed(self, value: Any) -> None:
        try:
            encoded = payloads.encode(value)
        except (TypeError, ValueError) as exc:
            exc.add_note(
                f"Task {self.job.task_path} returned {type(value).__name__!r}; "
                "a return value must be JSON-serializable to be stored."
            )
            self.fail(exc)
            return
        object.__setattr__(self.result, "_return_value", json.loads(encoded))
        self.outcome = Outcome(
            job_id=self.job.id,
            claim_token=self.job.claim_token,
            status=TaskResultStatus.SUCCESSFUL,
            finished_at=timezone.now(),
            return_value_json=encoded,
            errors=self.job.errors,
        )

    def fail(self, exc: BaseException) -> None:
        self.exception = exc
        self.outcome = failed_outcome(self.job, exc)


class JobExecutor:
    def __init__(
        self,
        *,
        job_threads: Executor,
        signal_thread: Executor,
        submit_outcome: Callable[[Outcome, OnWritten], None],
        sender: type,
        web_activity: WebActivity,
    ) -> None:
        self._job_threads = job_threads
        self._web_activity = web_activity
        self._signal_thread = signal_thread
        self._submit_outcome = submit_outcome
        self._sender = sender
        self._tasks: dict[str, Task] = {}
        # Attempts whose outcome is written, waiting for task_finished.
        self._written: list[tuple[Attempt, bool]] = []
        self._written_lock = threading.Lock()
        self._finishing_written = False

    def start(
        self, job: ClaimedJob, on_done: Callable[[ClaimedJob], None]
    ) -> asyncio.Task | None:
        """Start one attempt; ``on_done(job)`` is called (from any thread) when over.

        Returns an asyncio task that can be cancelled, or None for a sync job,
        which runs in a job thread and cannot be.
        """
        loop = asyncio.get_running_loop()
        task = self._tasks.get(job.task_path)
        if task is None:
            return loop.create_task(self._import_and_start(job, on_done))
        if iscoroutinefunction(task.func):
            return loop.create_task(self._run_async(Attempt(job, task), on_done))

        def run_in_thread() -> None:
            try:
                self._run_sync(Attempt(job, task))
            except Exception:
                logger.exception("Runtime error while running job %s.", job.id)
            finally:
                on_done(job)

        self._job_threads.submit(_with_fresh_connections, run_in_thread)
        return None

    async def _import_and_start(
        self, job: ClaimedJob, on_done: Callable[[ClaimedJob], None]
    ) -> None:
        # The first job of a task path in this process imports it; importing
        # runs module code, which may touch the database: never on the loop.
        try:
            task = await self._in_thread(self._job_threads, import_task, job.task_path)
        except UnknownTask as exc:
            logger.error("Job %s failed: %s", job.id, exc)
            self._submit_outcome(failed_outcome(job, exc), _log_if_lost(job))
            on_done(job)
            return
        self._tasks[job.task_path] = task
        started = self.start(job, on_done)
        if started is not None:
            await started

    def _run_sync(self, attempt: Attempt) -> None:
        args, kwargs = attempt.arguments()
        try:
            self._send_started(attempt)
            attempt.succeed(attempt.task.func(*args, **kwargs))
        except BaseException as exc:
            attempt.fail(exc)
        self._submit_outcome(attempt.outcome, self._on_written(attempt))

    async def _run_async(
        self, attempt: Attempt, on_done: Callable[[ClaimedJob], None]
    ) -> None:
        try:
            args, kwargs = attempt.arguments()
            try:
                await self._in_thread(self._signal_thread, self._send_started, attempt)
                attempt.succeed(await attempt.task.func(*args, **kwargs))
            except asyncio.CancelledError as exc:
                if asyncio.current_task().cancelling():
                    raise  # the runtime is stopping this attempt
                attempt.fail(exc)
            except BaseException as exc:
                attempt.fail(exc)
            self._submit_outcome(attempt.outcome, self._on_written(attempt))
        finally:
            on_done(attempt.job)

    @staticmethod
    async def _in_thread(
        threads: Executor, function: Callable[..., Any], *args: Any
    ) -> Any:
        """Run a blocking call in one of the runtime's threads and wait for it."""
        return await asyncio.wrap_future(
            threads.submit(_with_fresh_connections, function, *args)
        )

    def _on_written(self, attempt: Attempt) -> OnWritten:
        def on_written(accepted: bool) -> None:
            # Outcomes written while the signal thread is busy join its
            # current round, rather than each waking it on its own.
            with self._written_lock:
                self._written.append((attempt, accepted))
                if self._finishing_written:
                    return
                self._finishing_written = True
            self._signal_thread.submit(_with_fresh_connections, self._finish_written)

        return on_written

    def _finish_written(self) -> None:
        self._web_activity.wait_until_quiet()
        while True:
            with self._written_lock:
                if not self._written:
                    self._finishing_written = False
                    return
                written, self._written = self._written, []
            for attempt, accepted in written:
                self._finish(attempt, accepted)

    def _finish(self, attempt: Attempt, accepted: bool) -> None:
        if not accepted:
            _log_discarded(attempt.job, attempt.outcome)
            return
        try:
            self._send_finished(attempt)
        except Exception:
            logger.exception(
                "A task_finished receiver failed for job %s.", attempt.job.id
            )

    def _send_started(self, attempt: Attempt) -> None:
        task_started.send(self._sender, task_result=attempt.result)

    def _send_finished(self, attempt: Attempt) -> None:
        result, outcome = attempt.result, attempt.outcome
        object.__setattr__(result, "status", outcome.status)
        object.__setattr__(result, "finished_at", outcome.finished_at)
        object.__setattr__(result, "errors", list(outcome.errors))
        if attempt.exception is None:
            task_finished.send(self._sender, task_result=result)
            return
        # Django's log receiver reads sys.exc_info(): send from inside an
        # except block so the failure is logged with its traceback.
        try:
            raise attempt.exception
        except BaseException:
            task_finished.send(self._sender, task_result=result)


def _with_fresh_connections(function: Callable[..., Any], *args: Any) -> Any:
    # As Django does around a request: stale connections are closed before and
    # after, so CONN_MAX_AGE applies to the database use of jobs too.
    close_old_connections()
    try:
        return function(*args)
    finally:
        close_old_connections()


def _log_if_lost(job: ClaimedJob) -> OnWritten:
    def on_written(accepted: bool) -> None:
        if not accepted:
            _log_discarded(job, None)

    return on_written


def _log_discarded(job: ClaimedJob, outcome: Outcome | None) -> None:
    logger.warning(
        "Job %s (%s) ended, but its claim had already ended (released or "
        "recovered); this outcome (%s) was discarded.",
        job.id,
        job.task_path,
        outcome.status if outcome else "FAILED",
    )
