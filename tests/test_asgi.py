"""EmbeddedQueue speaks the lifespan protocol for the application it wraps."""

import asyncio

import pytest
from django.db import connections

from dbqueue_embedded.contrib.asgi import EmbeddedQueue
from dbqueue_embedded.models import WorkerProcess
from dbqueue_embedded.runtime import embedded
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


class LifespanApp:
    """An ASGI app with its own lifespan handling, recording what it sees."""

    def __init__(self, fail_startup: bool = False) -> None:
        self.fail_startup = fail_startup
        self.events: list[tuple[str, bool]] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        while True:
            message = await receive()
            # Whether the queue runs while the app handles the event.
            self.events.append((message["type"], bool(embedded.running())))
            if message["type"] == "lifespan.startup":
                if self.fail_startup:
                    await send({"type": "lifespan.startup.failed", "message": "no"})
                    return
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return


async def django_style_app(scope, receive, send) -> None:
    """Like Django's ASGIHandler: no lifespan support."""
    raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope}.")


class Server:
    """The lifespan side of an ASGI server."""

    def __init__(self, app) -> None:
        self.to_app: asyncio.Queue = asyncio.Queue()
        self.from_app: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.create_task(
            app({"type": "lifespan"}, self.to_app.get, self.from_app.put)
        )

    async def send(self, event: str) -> str:
        await self.to_app.put({"type": event})
        reply = await asyncio.wait_for(self.from_app.get(), timeout=30)
        return reply["type"]


def registered_processes() -> int:
    return WorkerProcess.objects.count()


def registered_in_thread(count: int) -> bool:
    """Wait for ``count`` processes from a worker thread, closing its
    connection after: an open one would keep SQLite from switching modes."""
    try:
        return bool(wait_for(lambda: registered_processes() == count))
    finally:
        connections.close_all()


def test_the_app_starts_before_the_queue_and_stops_after_it():
    inner = LifespanApp()

    async def serve() -> None:
        server = Server(EmbeddedQueue(inner))
        assert await server.send("lifespan.startup") == "lifespan.startup.complete"
        assert embedded.running()
        assert await server.send("lifespan.shutdown") == "lifespan.shutdown.complete"
        await asyncio.wait_for(server.task, timeout=30)

    asyncio.run(serve())
    assert inner.events == [("lifespan.startup", False), ("lifespan.shutdown", False)]
    assert not embedded.running()
    assert registered_processes() == 0


def test_a_failed_app_startup_is_reported_and_no_queue_starts():
    async def serve() -> str:
        server = Server(EmbeddedQueue(LifespanApp(fail_startup=True)))
        reply = await server.send("lifespan.startup")
        await asyncio.wait_for(server.task, timeout=30)
        return reply

    assert asyncio.run(serve()) == "lifespan.startup.failed"
    assert not embedded.running()
    assert registered_processes() == 0


def test_an_app_without_lifespan_support_gets_a_queue_all_the_same():
    async def serve() -> bool:
        server = Server(EmbeddedQueue(django_style_app))
        assert await server.send("lifespan.startup") == "lifespan.startup.complete"
        processes = await asyncio.to_thread(registered_in_thread, 1)
        assert await server.send("lifespan.shutdown") == "lifespan.shutdown.complete"
        await asyncio.wait_for(server.task, timeout=30)
        return processes

    assert asyncio.run(serve())
    assert registered_processes() == 0


def test_requests_reach_the_wrapped_app():
    sent = []

    async def request() -> None:
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await EmbeddedQueue(LifespanApp())({"type": "http"}, receive, send)

    asyncio.run(request())
    assert sent[0] == {"type": "http.response.start", "status": 204, "headers": []}
