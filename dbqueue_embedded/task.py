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

A unique task enqueues at most one job per key while one waits (or runs)::

    @task_options(unique_key="invoice:{invoice_id}")
    @task
    def send_invoice(invoice_id): ...

Defaults keep Django's semantics: one attempt, no timeout, no deduplication.
"""

import inspect
import math
import random
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from django.tasks import Task
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
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
    # A key like "invoice:{invoice_id}", formatted with the call's arguments
    # by name (or a function of the arguments returning the key): while a job
    # with the same key waits, enqueueing returns that job instead of adding
    # one. None: no deduplication.
    unique_key: str | Callable[..., str] | None = None
    # Until when a job blocks duplicates: until it "started" or "finished".
    unique_until: Literal["started", "finished"] = "started"
    # A key like "account:{account_id}" (or a function of the arguments):
    # at most concurrency_limit jobs with the same key wait to run or run at
    # once. Others wait (on_conflict="block") or are not run at all
    # ("discard": they fail with JobDiscarded). None: no limit.
    concurrency_key: str | Callable[..., str] | None = None
    concurrency_limit: int = 1
    # Seconds a job may hold its key while it waits to be claimed (its queue
    # paused, say); then the recovery sweep hands the key on and the job
    # queues for it again. A running job keeps the key until it ends: bound
    # hung jobs with ``timeout``.
    concurrency_lease: float = 300.0
    on_conflict: Literal["block", "discard"] = "block"

    def retry_backoff(self, failed_attempts: int) -> float:
        """Seconds to wait before the next attempt, after ``failed_attempts``."""
        delay = min(self.retry_max_delay, self.retry_delay * 2 ** (failed_attempts - 1))
        return random.uniform(delay / 2, delay)

    def unique_key_for(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> str | None:
        """The dedupe key of a call, or None for a task without one."""
        return format_key(self, self.unique_key, "unique_key", args, kwargs)

    def concurrency_key_for(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> str | None:
        """The concurrency key of a call, or None for a task without one."""
        return format_key(self, self.concurrency_key, "concurrency_key", args, kwargs)


# The longest key the job table stores.
KEY_MAX_LENGTH = 255


def is_priority(value: object) -> bool:
    """Whether ``value`` is a priority Django accepts: a whole number (not a
    bool) from TASK_MIN_PRIORITY to TASK_MAX_PRIORITY."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and TASK_MIN_PRIORITY <= value <= TASK_MAX_PRIORITY
    )


def format_key(
    task: Task,
    key: str | Callable[..., str] | None,
    option: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> str | None:
    """A key option's value for one call: formatted with the call's arguments
    by parameter name, or returned by the function given.

    Raises TypeError (arguments that do not fit the function) or ValueError
    (a key that is not a string or too long).
    """
    if key is None:
        return None
    if callable(key):
        value = key(*args, **kwargs)
    else:
        bound = _parameters(task).bind(*args, **kwargs)
        bound.apply_defaults()
        value = key.format(**bound.arguments)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{option} must give a non-empty string, not {value!r}.")
    if len(value) > KEY_MAX_LENGTH:
        raise ValueError(
            f"{option} {value[:40]!r}... is longer than {KEY_MAX_LENGTH} characters."
        )
    return value


def _parameters(task: Task) -> inspect.Signature:
    """The task function's signature, less the context it may take first."""
    signature = inspect.signature(task.func)
    parameters = list(signature.parameters.values())
    if task.takes_context:
        parameters = parameters[1:]
    return signature.replace(parameters=parameters)


def _validate_key(task: Task, option: str) -> None:
    key = getattr(task, option)
    if key is None or callable(key):
        return
    if not isinstance(key, str) or not key:
        raise InvalidTask(
            f"{option} must be a non-empty string or a function, not {key!r}."
        )
    names = set(_parameters(task).parameters)
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(key) if field]
    except ValueError as exc:
        raise InvalidTask(f"{option} {key!r} is not a valid template: {exc}.") from None
    for field in fields:
        name = field.split(".")[0].split("[")[0]
        if name not in names:
            raise InvalidTask(
                f"{option} {key!r} names {name!r}, which is not a parameter of "
                f"{task.name}()."
            )


# The options QueueTask adds to Django's Task.
OPTION_NAMES = (
    "max_attempts",
    "retry_on",
    "retry_delay",
    "retry_max_delay",
    "timeout",
    "unique_key",
    "unique_until",
    "concurrency_key",
    "concurrency_limit",
    "concurrency_lease",
    "on_conflict",
)


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
    _validate_key(task, "unique_key")
    _validate_key(task, "concurrency_key")
    limit = task.concurrency_limit
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidTask(
            f"concurrency_limit must be a whole number from 1 to 1000, not {limit!r}."
        )
    lease = task.concurrency_lease
    if (
        isinstance(lease, bool)
        or not isinstance(lease, int | float)
        or not math.isfinite(lease)
        or lease <= 0
    ):
        raise InvalidTask(
            f"concurrency_lease must be more than zero seconds, not {lease!r}."
        )
    if task.on_conflict not in ("block", "discard"):
        raise InvalidTask(
            f"on_conflict must be 'block' or 'discard', not {task.on_conflict!r}."
        )
    if task.unique_until not in ("started", "finished"):
        raise InvalidTask(
            f"unique_until must be 'started' or 'finished', not {task.unique_until!r}."
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
