"""Run the queue inside an ASGI server's processes.

Wrap the application in ``asgi.py``::

    from django.core.asgi import get_asgi_application
    from dbqueue_embedded.contrib.asgi import EmbeddedQueue

    application = EmbeddedQueue(get_asgi_application())

On the server's lifespan startup each server process starts its runtime, which
yields its own bookkeeping to the HTTP requests in flight; on lifespan
shutdown it drains it: claiming stops, running jobs get
``shutdown_timeout`` seconds, and jobs still running are released back to the
queue. Works with uvicorn (any ``--workers``), Gunicorn's uvicorn workers and
Hypercorn. Django's ASGI handler does not speak the lifespan protocol, so this
wrapper answers it; an inner application that does speak it is forwarded the
same events.

A server that leaves SIGTERM to its default action in the worker process
(Hypercorn's workers; the master terminates the last ones as soon as the first
has exited) would kill the runtime mid-drain. There, SIGTERM drains the queue
first and then ends the process as before.
"""

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..runtime.web_activity import web_requests

logger = logging.getLogger("dbqueue_embedded.runtime")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class EmbeddedQueue:
    """ASGI middleware that runs this process's queue while the app lives.

    ``backends`` names the TASKS aliases to run; by default every alias whose
    backend is dbqueue_embedded's.
    """

    def __init__(self, app: ASGIApp, *, backends: list[str] | None = None) -> None:
        self.app = app
        self.backends = backends

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            web_requests.request_started()
            try:
                await self.app(scope, receive, send)
            finally:
                web_requests.request_finished()
            return
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        inner = _InnerLifespan(self.app, scope)
        try:
            if await self._startup(inner, await receive(), send):
                await self._shutdown(inner, await receive(), send)
        finally:
            inner.cancel()

    async def _startup(
        self, inner: "_InnerLifespan", message: Message, send: Send
    ) -> bool:
        """Start the app, then the queue (jobs may use what the app set up).

        False if either failed.
        """
        from ..runtime import embedded

        reply = await inner.forward(message)
        if reply is not None and reply["type"] == "lifespan.startup.failed":
            await send(reply)
            return False
        try:
            await asyncio.to_thread(embedded.start, self.backends)
        except Exception as exc:
            logger.exception("The queue runtime could not start.")
            await inner.forward({"type": "lifespan.shutdown"})
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return False
        _drain_before_sigterm()
        await send({"type": "lifespan.startup.complete"})
        return True

    async def _shutdown(
        self, inner: "_InnerLifespan", message: Message, send: Send
    ) -> None:
        from ..runtime import embedded

        # Jobs may use what the app set up, so they stop first.
        await asyncio.to_thread(embedded.stop)
        reply = await inner.forward(message)
        if reply is not None and reply["type"] == "lifespan.shutdown.failed":
            await send(reply)
            return
        await send({"type": "lifespan.shutdown.complete"})


def _drain_before_sigterm() -> None:
    """Let SIGTERM drain the queue where it would otherwise kill at once."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # the server stops gracefully on its own; lifespan drains
    _SigtermDrain()


class _SigtermDrain:
    """On SIGTERM, drain the queue, then let SIGTERM end the process as before.

    The handler only wakes a thread that drains: a handler that waited itself
    could deadlock on a lock (logging's, say) held by the code it interrupted.
    """

    def __init__(self) -> None:
        self._wake_read, self._wake_write = os.pipe()
        self._drained = threading.Event()
        threading.Thread(
            target=self._drain_when_woken, name="dbqueue-sigterm", daemon=True
        ).start()
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self._drained.is_set():
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        else:
            os.write(self._wake_write, b"\0")  # repeated SIGTERMs change nothing

    def _drain_when_woken(self) -> None:
        from ..runtime import embedded

        os.read(self._wake_read, 1)
        logger.info("SIGTERM: draining the queue before this process exits.")
        embedded.stop()
        self._drained.set()
        os.kill(os.getpid(), signal.SIGTERM)


class _InnerLifespan:
    """The wrapped application's side of the lifespan protocol.

    Applications that do not support lifespan (Django's handler among them)
    raise or return when called with a lifespan scope; they are then left out.
    """

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self._received: asyncio.Queue[Message] = asyncio.Queue()
        self._sent: asyncio.Queue[Message] = asyncio.Queue()
        self._task = asyncio.create_task(app(scope, self._received.get, self._sent.put))

    async def forward(self, message: Message) -> Message | None:
        """Hand the app one event; return its reply, or None if it has none."""
        if not self._task.done():
            await self._received.put(message)
            reply = asyncio.create_task(self._sent.get())
            await asyncio.wait([reply, self._task], return_when=asyncio.FIRST_COMPLETED)
            if reply.done():
                return reply.result()
            reply.cancel()
        if not self._task.cancelled() and self._task.exception() is not None:
            logger.debug(
                "The wrapped application does not handle lifespan events: %s",
                self._task.exception(),
            )
        return None

    def cancel(self) -> None:
        self._task.cancel()
