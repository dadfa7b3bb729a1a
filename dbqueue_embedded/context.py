"""What a running task can learn from the queue, and tell it, through its context."""

import operator
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.tasks import TaskContext
from django.utils import timezone

from .results import Progress, QueueTaskResult

# The longest message a progress report may carry.
PROGRESS_MESSAGE_MAX_LENGTH = 200
# Seconds between two progress writes of one attempt: on SQLite every write
# takes the database's only write lock, and a task may report in a tight loop.
PROGRESS_WRITE_INTERVAL = 0.5


class StopRequest:
    """Set once when a running attempt should stop, with the reason why."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.reason: BaseException | None = None

    def request(self, reason: BaseException) -> None:
        """Ask the attempt to stop; the first reason given is kept."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
                self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


class ProgressReporter:
    """Passes an attempt's progress on to be stored, at most once per interval.

    A report that comes sooner waits, replaced by any newer one, and is
    passed on when the interval is over: the value stored is never older
    than one interval. ``close()`` hands the last value to the attempt's
    outcome, which stores it with the job's final state, and ignores reports
    from then on (a timed-out task still running in its thread).
    """

    def __init__(
        self,
        send: Callable[[Progress], None] | None = None,
        *,
        call_later: Callable[[float, Callable[[], None]], None] | None = None,
        interval: float = PROGRESS_WRITE_INTERVAL,
    ) -> None:
        # None: a context made outside a runtime (a task's unit test) keeps
        # its progress on its task_result only.
        self._send = send
        self._call_later = call_later
        self._interval = interval
        self._lock = threading.Lock()
        self._latest: Progress | None = None
        self._latest_sent = True
        self._last_sent_at = -interval
        self._send_scheduled = False
        self._closed = False

    def report(self, progress: Progress) -> None:
        """Take a new value; pass it on now or once the interval is over."""
        with self._lock:
            if self._closed or self._send is None:
                return
            self._latest, self._latest_sent = progress, False
            wait = self._last_sent_at + self._interval - time.monotonic()
            if wait <= 0:
                self._send_latest()
            elif not self._send_scheduled:
                self._send_scheduled = True
                self._call_later(wait, self._send_held)

    def _send_held(self) -> None:
        with self._lock:
            self._send_scheduled = False
            if not (self._closed or self._latest_sent):
                self._send_latest()

    def _send_latest(self) -> None:
        # Under the lock, so that values are passed on in the order reported.
        self._last_sent_at = time.monotonic()
        self._latest_sent = True
        self._send(self._latest)

    def close(self) -> Progress | None:
        """Stop passing values on; return the last one reported (or None)."""
        with self._lock:
            self._closed = True
            return self._latest


def new_progress(done: int, total: int | None, message: str) -> Progress:
    """A progress report, checked: TypeError or ValueError if it is not valid."""
    done = _whole_number("done", done)
    if total is not None:
        total = _whole_number("total", total)
    if not isinstance(message, str):
        raise TypeError(f"message must be a str, not {type(message).__name__}.")
    if done < 0 or (total is not None and total < 0):
        raise ValueError(
            f"done and total must not be negative (done={done}, total={total})."
        )
    if total is not None and done > total:
        raise ValueError(f"done ({done}) must not be more than total ({total}).")
    if "\x00" in message:
        raise ValueError("message must not contain a NUL character (\\x00).")
    if len(message) > PROGRESS_MESSAGE_MAX_LENGTH:
        raise ValueError(
            f"message is {len(message)} characters long; the most a progress "
            f"message may have is {PROGRESS_MESSAGE_MAX_LENGTH}."
        )
    return Progress(done=done, total=total, message=message, updated_at=timezone.now())


def _whole_number(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool.")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}.") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext(TaskContext):
    """The ``context`` a ``takes_context`` task receives from this queue.

    Besides Django's ``task_result`` and ``attempt``, it tells the task when
    it should stop: its cancellation was requested, or it ran past its
    ``timeout``. Python cannot stop a thread from outside, so a sync task
    that should be stoppable checks now and then::

        for row in rows:
            context.raise_if_cancelled()
            ...

    An ``async def`` task is cancelled at once (``asyncio.CancelledError`` at
    its current ``await``) and needs no checks.

    A task can also say how far it has come, for pages that show it (see
    ``report_progress``).
    """

    stop_request: StopRequest = field(default_factory=StopRequest, repr=False)
    progress_reporter: ProgressReporter = field(
        default_factory=ProgressReporter, repr=False
    )

    def report_progress(
        self, done: int, total: int | None = None, message: str = ""
    ) -> None:
        """Report how far the task has come: ``done`` of ``total`` (if known).

        Results show it as ``result.progress``, from ``get_result()`` and
        ``refresh()``, within about half a second: reports are stored at
        most twice a second per attempt, and the last one is always stored,
        at the latest with the job's outcome. Reporting never waits for the
        database, and is not part of any transaction the task has open.

        Raises TypeError unless ``done`` and ``total`` are ints and
        ``message`` a str, and ValueError for negative numbers, ``done``
        greater than ``total``, or a message longer than 200 characters;
        nothing is reported then.
        """
        progress = new_progress(done, total, message)
        self.progress_reporter.report(progress)
        if isinstance(self.task_result, QueueTaskResult):
            object.__setattr__(self.task_result, "progress", progress)

    async def areport_progress(
        self, done: int, total: int | None = None, message: str = ""
    ) -> None:
        """See report_progress(): it never blocks, so async tasks may call
        either."""
        self.report_progress(done, total, message)

    @property
    def cancel_requested(self) -> bool:
        """True once the attempt should stop (cancelled or timed out)."""
        return self.stop_request.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise JobCancelled (or JobTimeout) if the attempt should stop."""
        reason = self.stop_request.reason
        if reason is not None:
            raise type(reason)(*reason.args)

    def wait_for_cancel(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early if cancelled.

        Returns ``cancel_requested``.
        """
        return self.stop_request.wait(timeout)
