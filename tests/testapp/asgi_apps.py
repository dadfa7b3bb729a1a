"""ASGI applications for the server-integration check (tests/test_checks.py)."""

from typing import Any

from django.core.asgi import get_asgi_application

from dbqueue_embedded.contrib.asgi import EmbeddedQueue


class OuterMiddleware:
    """ASGI middleware wrapped around the queue's, as Sentry's would be."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


django_only = get_asgi_application()
with_queue = EmbeddedQueue(django_only)
with_queue_inside_middleware = OuterMiddleware(with_queue)
middleware_without_queue = OuterMiddleware(django_only)
