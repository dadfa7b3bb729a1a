"""Queues as operators see them: size, latency, pause, resume, clear.

::

    from dbqueue_embedded.queues import QueueInfo

    emails = QueueInfo("emails")
    emails.pause()            # every process stops claiming its jobs
    emails.size, emails.latency
    emails.resume()
    [q.name for q in QueueInfo.all()]
"""

from datetime import timedelta

from .backend import DatabaseBackend, queue_backend
from .conf import QUEUE_NAME_MAX_LENGTH
from .store import queues
from .store.queues import QueueStats


class QueueInfo:
    """One queue of a task backend. Each property reads the database afresh."""

    def __init__(self, name: str, backend: str = "default") -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"A queue name must be a non-empty string, not {name!r}.")
        if len(name) > QUEUE_NAME_MAX_LENGTH:
            raise ValueError(
                f"Queue name {name!r} is longer than {QUEUE_NAME_MAX_LENGTH} "
                "characters."
            )
        self.name = name
        self.backend: DatabaseBackend = queue_backend(backend)

    @classmethod
    def all(cls, backend: str = "default") -> list["QueueInfo"]:
        """Every queue with waiting or running jobs, and every paused queue."""
        found = queue_backend(backend)
        return [
            cls(stats.name, backend)
            for stats in queues.queue_stats(using=found.database, backend=found.alias)
        ]

    def stats(self) -> QueueStats:
        """All the numbers of the queue, counted at once."""
        [stats] = queues.queue_stats(
            using=self.backend.database,
            backend=self.backend.alias,
            queue_names=[self.name],
        )
        return stats

    @property
    def size(self) -> int:
        """Jobs that may run now (not those waiting for their run_after)."""
        return self.stats().ready

    @property
    def latency(self) -> timedelta:
        """How long the oldest job that may run now has been waiting."""
        return self.stats().latency

    @property
    def paused(self) -> bool:
        return self.stats().paused

    def pause(self) -> bool:
        """Stop every process from claiming the queue's jobs; False if paused already.

        Jobs can still be enqueued; jobs already running finish.
        """
        return queues.pause_queue(
            using=self.backend.database,
            backend=self.backend.alias,
            queue_name=self.name,
        )

    def resume(self) -> bool:
        """Let processes claim the queue's jobs again; False if it was not paused."""
        return queues.resume_queue(
            using=self.backend.database,
            backend=self.backend.alias,
            queue_name=self.name,
        )

    def clear(self) -> int:
        """Delete the jobs waiting in the queue; return how many. Running jobs stay."""
        return queues.clear_queue(
            using=self.backend.database,
            backend=self.backend.alias,
            queue_name=self.name,
        )

    def __repr__(self) -> str:
        return f"<QueueInfo {self.name!r} backend={self.backend.alias!r}>"
