"""Waking runtimes the moment a job is enqueued.

Polling is the correctness path: a runtime finds every ready job on its next
poll. Wake-ups only make it look sooner. In-process wake-ups reach the
runtimes of the enqueuing process once the enqueue has committed.
"""

import threading
from collections.abc import Callable, Collection

from django.db import transaction

# Called as callback(backend_alias, queue_names) after an enqueue commits.
WakeCallback = Callable[[str, Collection[str]], None]

_subscribers: list[WakeCallback] = []
_lock = threading.Lock()


def subscribe(callback: WakeCallback) -> None:
    with _lock:
        _subscribers.append(callback)


def unsubscribe(callback: WakeCallback) -> None:
    with _lock:
        _subscribers.remove(callback)


def jobs_enqueued(*, using: str, backend: str, queue_names: Collection[str]) -> None:
    """Wake local runtimes once the current transaction (if any) commits."""
    if _subscribers:
        transaction.on_commit(lambda: _wake(backend, queue_names), using=using)


def _wake(backend: str, queue_names: Collection[str]) -> None:
    for callback in list(_subscribers):
        callback(backend, queue_names)
