"""LISTEN on PostgreSQL: the runtime hears at once when another process enqueues.

One connection per runtime, outside Django's connection handling, runs on the
runtime's event loop with psycopg's async API. When the connection breaks,
``run()`` raises and the runtime restarts it with backoff; meanwhile polling
still finds every job.
"""

import logging
from collections.abc import Callable, Collection
from typing import Any

from django.db import connections

from . import CHANNEL, decode

logger = logging.getLogger(__name__)

# Seconds without a notification after which the connection is checked, so
# that a silently dropped connection is noticed.
IDLE_CHECK_INTERVAL = 30.0


class Listener:
    def __init__(
        self,
        using: str,
        name: str,
        on_wake: Callable[[str, Collection[str] | None], None],
        on_listening: Callable[[], None],
    ) -> None:
        self._on_wake = on_wake
        self._on_listening = on_listening
        # Django's parameters, less what only Django's own cursors use; the
        # name shows in pg_stat_activity.
        self._params: dict[str, Any] = {
            **{
                key: value
                for key, value in connections[using].get_connection_params().items()
                if key not in {"cursor_factory", "context"}
            },
            "application_name": name,
        }
        self.listening = False

    async def run(self) -> None:
        """Listen until cancelled; raise when the connection fails."""
        import psycopg

        try:
            async with await psycopg.AsyncConnection.connect(
                autocommit=True, **self._params
            ) as connection:
                await connection.execute(f"LISTEN {CHANNEL}")
                self.listening = True
                # Jobs enqueued while nobody listened would wait for a poll.
                self._on_listening()
                while True:
                    async for notification in connection.notifies(
                        timeout=IDLE_CHECK_INTERVAL
                    ):
                        self._hear(notification.payload)
                    await connection.execute("SELECT 1")
        finally:
            self.listening = False

    def _hear(self, payload: str) -> None:
        try:
            backend, queue_names = decode(payload)
        except (ValueError, KeyError, TypeError):
            logger.warning("Ignored a malformed wake-up on %s: %r", CHANNEL, payload)
            return
        self._on_wake(backend, queue_names)
