"""Enqueueing that waits for the caller's transaction to commit."""

from typing import Any

from django.db import transaction
from django.tasks import Task

from . import payloads


def enqueue_on_commit(
    task: Task, *args: Any, using: str | None = None, **kwargs: Any
) -> None:
    """Enqueue ``task`` once the transaction open on ``using`` commits.

    Outside a transaction it is enqueued at once; if the transaction rolls
    back, never. The task and its arguments are checked now, so a mistake
    raises here rather than after the commit.

    Needed when the queue lives in another database than the data the job
    reads (``OPTIONS["database"]``): then ``task.enqueue()`` inside
    ``transaction.atomic()`` commits the job at once, and a worker could run
    it before (or without) the caller's data being committed.
    """
    task.get_backend().validate_task(task)
    payloads.round_trip(args)
    payloads.round_trip(kwargs)
    transaction.on_commit(lambda: task.enqueue(*args, **kwargs), using=using)
