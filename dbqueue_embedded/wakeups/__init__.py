"""Waking runtimes the moment a job is enqueued.

Polling is the correctness path: a runtime finds every ready job on its next
poll. Wake-ups only make it look sooner, two ways:

- in this process, once the enqueue has committed, through ``jobs_enqueued``;
- across processes on PostgreSQL, through a ``NOTIFY`` the store sends in
  the enqueuing transaction (delivered only if it commits) and the runtime's
  listener (:mod:`.listener`).
"""

import json
import threading
from collections.abc import Callable, Collection

from django.db import transaction

# The PostgreSQL channel of wake-ups.
CHANNEL = "dbqueue_embedded"
# NOTIFY payloads must stay under 8000 bytes; a longer list of queues is
# sent as "every queue".
_MAX_PAYLOAD = 4000

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


def encode(backend: str, queue_names: Collection[str]) -> str:
    """The NOTIFY payload saying that jobs are ready in these queues."""
    payload = json.dumps({"backend": backend, "queues": sorted(queue_names)})
    if len(payload) > _MAX_PAYLOAD:
        payload = json.dumps({"backend": backend, "queues": None})
    return payload


def decode(payload: str) -> tuple[str, Collection[str] | None]:
    """The backend and queues of a NOTIFY payload; None queues means any."""
    message = json.loads(payload)
    return message["backend"], message["queues"]


def _wake(backend: str, queue_names: Collection[str]) -> None:
    for callback in list(_subscribers):
        callback(backend, queue_names)
