"""Requests in flight in this process, so that an embedded runtime yields to them.

Python runs one thread at a time. A runtime thread that wakes during a
request (to claim jobs, write outcomes, send ``task_finished``) takes the
interpreter from the request's thread and adds to its latency. The server
integrations report each request; before such bookkeeping, the runtime waits
until no request is in flight, but never longer than ``MAX_DEFER`` seconds,
so that a server that is never idle still runs its queue. Jobs themselves are
not held back.
"""

import asyncio
import threading
from contextlib import suppress

# The longest the runtime defers one step of its own work for requests.
MAX_DEFER = 0.02


class WebActivity:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._quiet = threading.Condition(self._lock)
        self._in_flight = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def request_started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def request_finished(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._in_flight:
                return
            self._quiet.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            with suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)

    def wait_until_quiet(self, max_wait: float = MAX_DEFER) -> None:
        """Block until no request is in flight, or ``max_wait`` seconds pass."""
        with self._lock:
            if self._in_flight:
                self._quiet.wait_for(lambda: not self._in_flight, timeout=max_wait)

    async def quiet(self, max_wait: float = MAX_DEFER) -> None:
        """Like ``wait_until_quiet()``, on an event loop."""
        with self._lock:
            if not self._in_flight:
                return
            waiter = (asyncio.get_running_loop(), asyncio.Event())
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter[1].wait(), max_wait)
        except TimeoutError:
            with self._lock, suppress(ValueError):  # already handed out
                self._waiters.remove(waiter)


# The web requests of this process, as the server integrations report them.
web_requests = WebActivity()
