"""What a running task can learn from the queue through its context."""

import threading
from dataclasses import dataclass, field

from django.tasks import TaskContext


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
    """

    stop_request: StopRequest = field(default_factory=StopRequest, repr=False)

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
