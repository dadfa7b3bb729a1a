"""The runtimes of this web process, started by a server integration.

``start()`` starts one runtime per task backend that is a ``DatabaseBackend``,
once per process: a second call (a Gunicorn hook and an ASGI lifespan in the
same worker, say) changes nothing. ``stop()`` stops them gracefully. After a
fork, the child does not inherit its parent's runtimes (their threads did not
survive the fork); it starts its own.
"""

import logging
import os
import threading

from .supervisor import Runtime

logger = logging.getLogger("dbqueue_embedded.runtime")

_lock = threading.Lock()
_runtimes: list[Runtime] = []
# Runtimes a stop() is draining: a second stop() waits for them too.
_stopping: list[Runtime] = []
_owner_pid: int | None = None


def start(aliases: list[str] | None = None, *, web_threads: int = 1) -> list[Runtime]:
    """Start this process's runtimes (for ``aliases``, or every queue backend).

    ``web_threads`` (the threads serving requests here) counts towards the
    connection budget. Returns at once: each runtime registers and runs in
    its own thread. Raises ImproperlyConfigured for invalid options.
    """
    from ..backend import queue_backend_aliases

    global _owner_pid
    with _lock:
        if _owner_pid != os.getpid():
            # Inherited through fork: those runtimes run in the parent only.
            _runtimes.clear()
            _stopping.clear()
            _owner_pid = os.getpid()
        if not _runtimes:
            runtimes = [
                Runtime(alias, mode="embedded", web_threads=web_threads)
                for alias in (aliases or queue_backend_aliases())
            ]
            for runtime in runtimes:
                runtime.start()
            _runtimes.extend(runtimes)
        return list(_runtimes)


def stop() -> None:
    """Stop this process's runtimes gracefully; do nothing if none runs.

    Returns once they have stopped, also when another thread began the stop.
    """
    with _lock:
        if _owner_pid != os.getpid():
            return
        _stopping.extend(_runtimes)
        _runtimes.clear()
        runtimes = list(_stopping)
    for runtime in runtimes:
        runtime.request_stop()
    for runtime in runtimes:
        runtime.stop()
    with _lock:
        for runtime in runtimes:
            if runtime in _stopping:
                _stopping.remove(runtime)


def running() -> list[Runtime]:
    """The runtimes this process runs now."""
    with _lock:
        if _owner_pid != os.getpid():
            return []
        return [runtime for runtime in _runtimes if runtime.is_running]
