"""The backend's Task class: Django's Task plus retries and a timeout.

On Django 6.1, ``@task`` passes extra keyword arguments to the backend's
``task_class``, so the options go straight into the decorator::

    @task(max_attempts=5, retry_on=(ConnectionError,), timeout=30)
    def charge(order_id): ...

On Django 6.0, ``@task`` takes no extra arguments; ``task_options`` (which
also works on 6.1) sets them on a task::

    @task_options(max_attempts=5, timeout=30)
    @task
    def charge(order_id): ...

Defaults keep Django's semantics: one attempt, no timeout.
"""

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from django.tasks import Task
from django.tasks.exceptions import InvalidTask


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueTask(Task):
    # How many times the job may run before its failure is final.
    max_attempts: int = 1
    # Exceptions that make a failed attempt worth another one; others fail
    # the job at once.
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    # Seconds before the first retry; each further retry waits twice as long,
    # up to retry_max_delay, less a random part of up to half (jitter, so
    # that jobs failing together do not retry together).
    retry_delay: float = 1.0
    retry_max_delay: float = 3600.0
    # Seconds an attempt may run; None: no limit. See README, "Timeouts".
    timeout: float | None = None

    def retry_backoff(self, failed_attempts: int) -> float:
        """Seconds to wait before the next attempt, after ``failed_attempts``."""
        delay = min(self.retry_max_delay, self.retry_delay * 2 ** (failed_attempts - 1))
        return random.uniform(delay / 2, delay)


# The options QueueTask adds to Django's Task.
OPTION_NAMES = ("max_attempts", "retry_on", "retry_delay", "retry_max_delay", "timeout")


def validate_options(task: QueueTask) -> None:
    """Raise InvalidTask naming the first invalid option of ``task``."""
    max_attempts = task.max_attempts
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
        raise InvalidTask(f"max_attempts must be a whole number, not {max_attempts!r}.")
    if max_attempts < 1:
        raise InvalidTask(f"max_attempts must be at least 1, not {max_attempts}.")
    retry_on = task.retry_on
    if not isinstance(retry_on, tuple) or not all(
        isinstance(cls, type) and issubclass(cls, BaseException) for cls in retry_on
    ):
        raise InvalidTask(
            f"retry_on must be a tuple of exception classes, not {retry_on!r}."
        )
    for name in ("retry_delay", "retry_max_delay", "timeout"):
        value = getattr(task, name)
        if name == "timeout" and value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
            or (name == "timeout" and value == 0)
        ):
            bound = "more than zero" if name == "timeout" else "zero or more"
            raise InvalidTask(f"{name} must be {bound} seconds, not {value!r}.")
    if task.retry_max_delay < task.retry_delay:
        raise InvalidTask(
            f"retry_max_delay ({task.retry_max_delay!r}) is shorter than "
            f"retry_delay ({task.retry_delay!r})."
        )


def task_options(**options: Any) -> Callable[[Task], QueueTask]:
    """Set the queue's options on a task (Django 6.0 and 6.1 alike).

    Use it above ``@task``. Unknown or invalid options raise at import time.
    """
    unknown = set(options) - set(OPTION_NAMES)
    if unknown:
        raise TypeError(
            f"Unknown task option(s): {', '.join(sorted(unknown))}. "
            f"Known options: {', '.join(OPTION_NAMES)}."
        )

    def apply(task: Task) -> QueueTask:
        if not isinstance(task, Task):
            raise TypeError(
                f"task_options() applies to a task, not {type(task).__name__}; "
                "put it above @task."
            )
        if isinstance(task, QueueTask):
            return replace(task, **options)
        fields = {name: getattr(task, name) for name in task.__dataclass_fields__}
        return QueueTask(**fields, **options)

    return apply
