"""Running one claimed job: sync tasks in the job threads, async ones on the loop.

An attempt ends in exactly one outcome, handed to the completer; its slot is
free as soon as the task has returned. Anything the task raises
(``SystemExit`` included) fails the job with its traceback and leaves the
runtime running.

``task_started`` is sent just before the task runs. ``task_finished`` is sent
from the runtime's signal thread once the outcome is durable, and only if the
claim was still held when it was written: a receiver that reads the result
sees what it was told. Slow receivers delay other signals, never jobs.

Progress a task reports goes to the completer, which stores it fenced by the
attempt's claim (see ``JobContext.report_progress``); the last value reported
travels with the attempt's outcome.

Each job's start and end is logged to ``dbqueue_embedded.jobs`` with its
fields as extras (see ``_log_job``).
"""

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace
from inspect import iscoroutinefunction
from typing import Any

from django.db import close_old_connections
from django.tasks import Task, TaskResultStatus
from django.tasks.signals import task_finished, task_started
from django.utils import timezone

from .. import payloads
from ..context import JobContext, ProgressReporter, StopRequest
from ..exceptions import JobCancelled, JobTimeout, UnknownTask
from ..metrics.counters import job_counters
from ..named_jobs.steps import run_step
from ..results import Progress, import_task, result_of_job
from ..store import ClaimedJob, Outcome, ProgressUpdate
from ..task import QueueTask
from .completer import OnWritten
from .outcomes import failed_attempts, failure_outcome, unknown_task_outcome
from .web_activity import WebActivity

logger = logging.getLogger(__name__)
# One record per event in a job's life; see _log_job.
jobs_logger = logging.getLogger("dbqueue_embedded.jobs")


class Attempt:
    """One execution of a claimed job and how it ended.

    It ends once: by the task returning or raising, or earlier by its
    timeout; whichever comes second is discarded.
    """

    def __init__(self, job: ClaimedJob, task: Task, progress: ProgressReporter) -> None:
        self.job = job
        self.task = task
        self.result = result_of_job(
            task, job, status=TaskResultStatus.RUNNING, errors=job.errors
        )
        self.stop = StopRequest()
        self.progress = progress
        # Monotonic times the task was called and the attempt ended.
        self.began: float | None = None
        self.ended: float | None = None
        # The asyncio task running an async job, to cancel it by.
        self.async_task: asyncio.Task | None = None
        self.outcome: Outcome | None = None
        # What the task raised, kept to send task_finished with its traceback.
        self.exception: BaseException | None = None
        self._lock = threading.Lock()

    @property
    def timeout(self) -> float | None:
        return self.task.timeout if isinstance(self.task, QueueTask) else None

    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        args = list(self.result.args)
        if self.task.takes_context:
            args.insert(
                0,
                JobContext(
                    task_result=self.result,
                    stop_request=self.stop,
                    progress_reporter=self.progress,
                ),
            )
        return args, self.result.kwargs

    def begin(self) -> None:
        """Note that the task is being called now."""
        self.began = time.monotonic()
        _log_job(logging.DEBUG, "started", self.job, "started")

    @property
    def duration(self) -> float:
        """Seconds from the task's call to the attempt's end (0 if never called)."""
        if self.began is None or self.ended is None:
            return 0.0
        return self.ended - self.began

    def succeed(self, value: Any) -> bool:
        """End with the task's return value; False if the attempt had ended."""
        try:
            encoded = payloads.encode(value)
        except (TypeError, ValueError) as exc:
            exc.add_note(
                f"Task {self.job.task_path} returned {type(value).__name__!r}; "
                "a return value must be JSON-serializable to be stored."
            )
            return self.fail(exc)
        outcome = Outcome(
            job_id=self.job.id,
            claim_token=self.job.claim_token,
            status=TaskResultStatus.SUCCESSFUL,
            finished_at=timezone.now(),
            return_value_json=encoded,
            errors=self.job.errors,
        )
        if not self._end(outcome, None):
            return False
        object.__setattr__(self.result, "_return_value", json.loads(encoded))
        return True

    def fail(self, exc: BaseException) -> bool:
        """End with an error (retried if the task allows); False if ended.

        A job whose cancellation was requested is not retried, whatever it
        raised.
        """
        cancelled = isinstance(self.stop.reason, JobCancelled)
        outcome = failure_outcome(self.job, None if cancelled else self.task, exc)
        return self._end(outcome, exc)

    def _end(self, outcome: Outcome, exc: BaseException | None) -> bool:
        with self._lock:
            if self.outcome is not None:
                return False
            self.ended = time.monotonic()
            last_progress = self.progress.close()
            if last_progress is not None:
                outcome = replace(
                    outcome, progress_json=payloads.encode(last_progress.as_json())
                )
            self.outcome, self.exception = outcome, exc
            return True


class JobExecutor:
    def __init__(
        self,
        *,
        job_threads: Executor,
        signal_thread: Executor,
        submit_outcome: Callable[[Outcome, OnWritten], None],
        submit_progress: Callable[[ProgressUpdate], None],
        sender: type,
        web_activity: WebActivity,
        unknown_task_releases: int,
    ) -> None:
        self._job_threads = job_threads
        self._web_activity = web_activity
        self._signal_thread = signal_thread
        self._submit_outcome = submit_outcome
        self._submit_progress = submit_progress
        self._sender = sender
        self._unknown_task_releases = unknown_task_releases
        self._tasks: dict[str, Task] = {}
        # Running attempts by claim, to pass cancel requests on to.
        self._attempts: dict[tuple[uuid.UUID, uuid.UUID], Attempt] = {}
        self._attempts_lock = threading.Lock()
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
        if job.cancel_requested:
            # Cancelled while an earlier attempt ran, which then ended
            # without finishing (released, or its process died).
            exc = JobCancelled("The job was cancelled; this attempt did not run.")
            self._submit_outcome(failure_outcome(job, None, exc), _log_if_lost(job))
            on_done(job)
            return None
        if job.name:
            self._start_step(job, on_done)
            return None
        task = self._tasks.get(job.task_path)
        if task is None:
            return loop.create_task(self._import_and_start(job, on_done))
        progress = ProgressReporter(
            functools.partial(self._send_progress, job),
            call_later=functools.partial(_call_later, loop),
        )
        attempt = Attempt(job, task, progress)
        with self._attempts_lock:
            self._attempts[job.claim] = attempt
        done = functools.partial(self._attempt_done, attempt, on_done)
        if iscoroutinefunction(task.func):
            attempt.async_task = loop.create_task(self._run_async(attempt, done))
            return attempt.async_task
        timer = None
        if attempt.timeout is not None:
            timer = loop.call_later(attempt.timeout, self._time_out, attempt)

        def run_in_thread() -> None:
            try:
                self._run_sync(attempt)
            except Exception:
                logger.exception("Runtime error while running job %s.", job.id)
            finally:
                if timer is not None:
                    with contextlib.suppress(RuntimeError):  # the loop closed
                        loop.call_soon_threadsafe(timer.cancel)
                done()

        self._job_threads.submit(_with_fresh_connections, run_in_thread)
        return None

    def _start_step(
        self, job: ClaimedJob, on_done: Callable[[ClaimedJob], None]
    ) -> None:
        """Run one step of a named job in a job thread (see named_jobs.steps)."""

        def run_in_thread() -> None:
            try:
                outcome = run_step(
                    job, unknown_task_releases=self._unknown_task_releases
                )
            except Exception as exc:
                logger.exception("Runtime error while running job %s.", job.id)
                outcome = failure_outcome(job, None, exc)
            try:
                self._submit_outcome(outcome, _log_if_lost(job))
            finally:
                on_done(job)

        self._job_threads.submit(_with_fresh_connections, run_in_thread)

    def request_cancel(self, job_id: uuid.UUID) -> None:
        """Pass a cancel request on to the job's running attempts (loop thread)."""
        with self._attempts_lock:
            attempts = [a for claim, a in self._attempts.items() if claim[0] == job_id]
        for attempt in attempts:
            if attempt.stop.is_set():
                continue
            _log_job(
                logging.INFO, "cancelling", attempt.job, "is cancelled as requested"
            )
            attempt.stop.request(JobCancelled("The job was cancelled while it ran."))
            if attempt.async_task is not None:
                attempt.async_task.cancel()

    def _attempt_done(
        self, attempt: Attempt, on_done: Callable[[ClaimedJob], None]
    ) -> None:
        with self._attempts_lock:
            self._attempts.pop(attempt.job.claim, None)
        on_done(attempt.job)

    def _time_out(self, attempt: Attempt) -> None:
        """End a sync attempt that outran its timeout; its thread runs on."""
        exc = JobTimeout(
            f"Task {attempt.job.task_path} ran longer than its timeout of "
            f"{attempt.timeout:g} s. A thread cannot be stopped from outside: "
            "the attempt ended here, and whatever the task does or returns "
            "from now on is discarded."
        )
        attempt.stop.request(exc)
        if attempt.fail(exc):
            _log_job(
                logging.WARNING,
                "timed_out",
                attempt.job,
                "timed out after %g s; its thread keeps its slot until the task "
                "returns",
                attempt.timeout,
                duration=attempt.duration,
            )
            self._submit_outcome(attempt.outcome, self._on_written(attempt))

    async def _import_and_start(
        self, job: ClaimedJob, on_done: Callable[[ClaimedJob], None]
    ) -> None:
        # The first job of a task path in this process imports it; importing
        # runs module code, which may touch the database: never on the loop.
        try:
            task = await self._in_thread(self._job_threads, import_task, job.task_path)
        except UnknownTask as exc:
            outcome = unknown_task_outcome(job, exc, self._unknown_task_releases)
            released = outcome.status == TaskResultStatus.READY
            _log_job(
                logging.WARNING if released else logging.ERROR,
                "released" if released else "failed",
                job,
                "%s: %s",
                "released" if released else "failed",
                "\n".join([str(exc), *exc.__notes__]) if released else exc,
            )
            self._submit_outcome(outcome, _log_if_lost(job))
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
            attempt.begin()
            ended = attempt.succeed(attempt.task.func(*args, **kwargs))
        except BaseException as exc:
            ended = attempt.fail(exc)
        if ended:
            self._submit_outcome(attempt.outcome, self._on_written(attempt))
        else:
            _log_job(
                logging.WARNING,
                "returned_late",
                attempt.job,
                "returned after its attempt had timed out; what it returned or "
                "raised was discarded",
            )

    async def _run_async(self, attempt: Attempt, done: Callable[[], None]) -> None:
        try:
            args, kwargs = attempt.arguments()
            try:
                await self._in_thread(self._signal_thread, self._send_started, attempt)
                attempt.begin()
                attempt.succeed(await self._call_async(attempt, args, kwargs))
            except asyncio.CancelledError as exc:
                if attempt.stop.reason is not None:  # cancelled on request
                    asyncio.current_task().uncancel()
                    attempt.fail(attempt.stop.reason)
                elif asyncio.current_task().cancelling():
                    raise  # the runtime is stopping this attempt
                else:
                    attempt.fail(exc)
            except BaseException as exc:
                attempt.fail(exc)
            self._submit_outcome(attempt.outcome, self._on_written(attempt))
        finally:
            done()

    @staticmethod
    async def _call_async(attempt: Attempt, args: list, kwargs: dict) -> Any:
        try:
            async with asyncio.timeout(attempt.timeout) as deadline:
                return await attempt.task.func(*args, **kwargs)
        except TimeoutError:
            if not deadline.expired():
                raise  # the task's own timeout
            raise JobTimeout(
                f"Task {attempt.job.task_path} ran longer than its timeout of "
                f"{attempt.timeout:g} s and was cancelled."
            ) from None

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
        _log_ended(attempt)
        _count_ended(attempt)
        if attempt.outcome.status == TaskResultStatus.READY:
            return  # to be retried, not finished: no task_finished
        try:
            self._send_finished(attempt)
        except Exception:
            logger.exception(
                "A task_finished receiver failed for job %s.", attempt.job.id
            )

    def _send_progress(self, job: ClaimedJob, progress: Progress) -> None:
        self._submit_progress(
            ProgressUpdate(
                job_id=job.id,
                claim_token=job.claim_token,
                progress_json=payloads.encode(progress.as_json()),
            )
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


def _call_later(
    loop: asyncio.AbstractEventLoop, delay: float, callback: Callable[[], None]
) -> None:
    """Run ``callback`` on the loop after ``delay`` seconds, from any thread."""
    with contextlib.suppress(RuntimeError):  # the loop closed: the runtime stopped
        loop.call_soon_threadsafe(loop.call_later, delay, callback)


def _log_if_lost(job: ClaimedJob) -> OnWritten:
    def on_written(accepted: bool) -> None:
        if not accepted:
            _log_discarded(job, None)

    return on_written


def _log_ended(attempt: Attempt) -> None:
    """Log how an attempt whose outcome was stored ended."""
    job, outcome, exc = attempt.job, attempt.outcome, attempt.exception
    duration = attempt.duration
    if outcome.status == TaskResultStatus.SUCCESSFUL:
        _log_job(
            logging.DEBUG,
            "succeeded",
            job,
            "succeeded in %.3f s",
            duration,
            duration=duration,
        )
    elif outcome.status == TaskResultStatus.READY:
        _log_job(
            logging.WARNING,
            "retrying",
            job,
            "failed in %.3f s with %s: %s; retrying %s (failure %d of at most %d)",
            duration,
            outcome.errors[-1].exception_class_path,
            exc,
            f"at {outcome.available_at.isoformat()}" if outcome.available_at else "now",
            failed_attempts(job) + 1,
            attempt.task.max_attempts,
            duration=duration,
        )
    elif isinstance(exc, JobCancelled):
        _log_job(
            logging.INFO,
            "cancelled",
            job,
            "was cancelled after %.3f s",
            duration,
            duration=duration,
        )
    else:
        _log_job(
            logging.ERROR,
            "failed",
            job,
            "failed in %.3f s with %s: %s",
            duration,
            outcome.errors[-1].exception_class_path,
            exc,
            duration=duration,
            exc_info=exc,
        )


def _count_ended(attempt: Attempt) -> None:
    """Count an attempt whose outcome was stored, for the metrics."""
    job = attempt.job
    succeeded = attempt.outcome.status == TaskResultStatus.SUCCESSFUL
    job_counters.count_finished(
        job.backend,
        job.queue_name,
        job.task_path,
        TaskResultStatus.SUCCESSFUL if succeeded else TaskResultStatus.FAILED,
        attempt.duration,
    )


def _log_discarded(job: ClaimedJob, outcome: Outcome | None) -> None:
    _log_job(
        logging.WARNING,
        "discarded",
        job,
        "ended, but its claim had already ended (released or recovered); this "
        "outcome (%s) was discarded",
        outcome.status if outcome else TaskResultStatus.FAILED,
    )


def _log_job(
    level: int,
    event: str,
    job: ClaimedJob,
    message: str,
    *args: Any,
    duration: float | None = None,
    exc_info: BaseException | None = None,
) -> None:
    """Log an event of a job to ``dbqueue_embedded.jobs``.

    The text reads "Job <id> (<task>) <message % args> (attempt <n>, queue
    <name>)". The record also carries the fields as extras, for
    structured formatters: ``event``, ``job_id``, ``task``, ``queue``,
    ``attempt``, ``worker_id``, and ``duration`` (seconds) once the attempt
    ended. Nothing is built while the level is disabled: at thousands of
    jobs a second, starts and successes are DEBUG.
    """
    if not jobs_logger.isEnabledFor(level):
        return
    attempt = len(job.worker_ids)
    fields = {
        "event": event,
        "job_id": str(job.id),
        "task": job.task_path,
        "queue": job.queue_name,
        "attempt": attempt,
        "worker_id": job.worker_ids[-1] if job.worker_ids else "",
    }
    if duration is not None:
        fields["duration"] = duration
    jobs_logger.log(
        level,
        "Job %s (%s) %s (attempt %d, queue %s)",
        job.id,
        job.task_path,
        message % args,
        attempt,
        job.queue_name,
        exc_info=exc_info,
        extra=fields,
    )
