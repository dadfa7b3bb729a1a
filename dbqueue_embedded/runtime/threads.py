"""The thread pool behind the runtime's blocking work.

Waking a sleeping thread costs far more than a short job, so the pool wakes
threads in a cascade: a submission wakes at most one idle thread, and a thread
that takes work wakes the next only while more work is waiting and no other
wake-up is already on its way. Short jobs then run back to back on a thread
that is already awake, while jobs that block (on I/O, on ``sleep``) hand the
interpreter to the next thread, which fans the work out to the whole pool
within microseconds. Threads start on demand, up to the pool's size.

The threads are daemons: a runtime that was never stopped must not hold up
the exit of its process, and a job still running when its process exits has
already been released back to the queue.
"""

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any


class ThreadPool(Executor):
    def __init__(self, size: int, *, name: str) -> None:
        self._size = size
        self._name = name
        self._calls: deque[tuple[Future, Callable[..., Any], tuple, dict]] = deque()
        self._lock = threading.Lock()
        self._work_waiting = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for work
        self._waking = 0  # threads notified but not yet back at the queue
        self._shutting_down = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        with self._lock:
            if self._shutting_down:
                raise RuntimeError(f"{self._name} is shut down.")
            self._calls.append((future, fn, args, kwargs))
            self._wake_one_if_needed()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutting_down = True
            self._work_waiting.notify_all()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()

    def _wake_one_if_needed(self) -> None:
        # Called with the lock held.
        if self._waking or len(self._calls) == 0:
            return
        if self._idle > self._waking:
            self._waking += 1
            self._work_waiting.notify()
        elif len(self._threads) < self._size:
            self._waking += 1
            thread = threading.Thread(
                target=self._work,
                name=f"{self._name}-{len(self._threads)}"
                if self._size > 1
                else self._name,
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        with self._lock:
            self._waking -= 1  # a new thread is at the queue
        while True:
            with self._lock:
                while not self._calls:
                    if self._shutting_down:
                        return
                    self._idle += 1
                    self._work_waiting.wait()
                    self._idle -= 1
                    if not self._shutting_down:
                        self._waking -= 1  # this wake-up was counted by its notifier
                future, fn, args, kwargs = self._calls.popleft()
                self._wake_one_if_needed()
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # the caller decides what it means
                    future.set_exception(exc)
                else:
                    future.set_result(result)
