"""The backend's ``OPTIONS``: defaults and validation.

Validation never raises from the backend's constructor (Django builds backends
while importing task modules); problems are collected as messages, reported by
``manage.py check`` and raised when a runtime is started.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .recurring import RecurringSchedule, parse_schedule
from .selectors import ALL_QUEUES, QueueSelector, parse_selectors

# The longest queue name the job table stores.
QUEUE_NAME_MAX_LENGTH = 100


# Jobs one process runs at once unless OPTIONS say otherwise. A web process
# that runs the queue embedded also serves requests, so it runs fewer.
DEFAULT_CONCURRENCY = {"standalone": 32, "embedded": 8}

# Seconds of silence after which a process is presumed dead, by database.
# SQLite's writers wait for each other, so a heartbeat may be late there.
DEFAULT_PROCESS_DEAD_AFTER = {"postgresql": 6.0, "sqlite": 15.0}


# Seconds between two refreshes of the dashboard, unless
# settings.DBQUEUE_DASHBOARD_REFRESH says otherwise.
DASHBOARD_REFRESH_SECONDS = 5


@dataclass(frozen=True, kw_only=True)
class RuntimeOptions:
    # Jobs one process runs at once: sync jobs each take a thread of the job
    # pool, async jobs share the runtime's event loop. None: by mode, as in
    # DEFAULT_CONCURRENCY.
    concurrency: int | None = None
    # Seconds between two looks for ready jobs when nothing woke the runtime.
    poll_interval: float = 1.0
    # Seconds that must pass between two jobs this process takes, which it
    # then claims one at a time (django-db-queue's --rate_limit); 0: no limit.
    min_job_interval: float = 0.0
    # Seconds running jobs get to finish on a graceful stop before they are
    # released back to the queue.
    shutdown_timeout: float = 10.0
    # Seconds between two heartbeats of the process row (and two looks for
    # cancel requests and for dead processes' jobs).
    heartbeat_interval: float = 2.0
    # Seconds without a heartbeat after which other processes presume a
    # process dead and hand its running jobs back to the queue. None: by
    # database, as in DEFAULT_PROCESS_DEAD_AFTER.
    process_dead_after: float | None = None
    # Attempts of one job that may die with their process (killed, out of
    # memory) before the job is failed instead of run again.
    max_lost_attempts: int = 3
    # Times a job whose task a process cannot import (a rolling deploy) is
    # handed back for another process before it fails.
    unknown_task_releases: int = 10
    # Seconds finished jobs are kept before the runtime deletes them, by
    # outcome; None keeps them forever.
    keep_successful: float | None = 24 * 3600.0
    keep_failed: float | None = 7 * 24 * 3600.0
    # Seconds between two prunes of finished jobs by each runtime.
    prune_interval: float = 60.0
    # Recurring tasks, by key (see dbqueue_embedded.recurring).
    recurring: tuple[RecurringSchedule, ...] = ()
    # Seconds between two looks at the recurring schedules.
    recurring_interval: float = 1.0
    # The database alias holding the queue's tables; None: where the
    # database routers put them (the default database without a router).
    database: str | None = None
    # Queues to take jobs from, most preferred first.
    worker_queues: tuple[QueueSelector, ...] = field(
        default=(QueueSelector(ALL_QUEUES),)
    )


def process_dead_after(options: RuntimeOptions, vendor: str) -> float:
    """The seconds of silence after which a process is presumed dead.

    The option if set; otherwise the database's default, but never less than
    three heartbeats, so that one late or failed heartbeat is survived.
    """
    if options.process_dead_after is not None:
        return options.process_dead_after
    default = DEFAULT_PROCESS_DEAD_AFTER.get(
        vendor, DEFAULT_PROCESS_DEAD_AFTER["sqlite"]
    )
    return max(default, 3 * options.heartbeat_interval)


def _selectors(value: Any) -> tuple[QueueSelector, ...]:
    if isinstance(value, tuple) and all(isinstance(v, QueueSelector) for v in value):
        return value
    return parse_selectors(value)


def _whole_number(value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"must be a whole number of at least {minimum}")
    return value


def _seconds(value: Any, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number of seconds")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise ValueError(f"must be {bound} seconds")
    return float(value)


def _alias(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a database alias from DATABASES")
    return value


def _recurring(value: Any) -> tuple[RecurringSchedule, ...]:
    if isinstance(value, tuple):  # already parsed
        return value
    if not isinstance(value, Mapping):
        raise ValueError("must be a dict of recurring tasks by key")
    return tuple(parse_schedule(key, entry) for key, entry in value.items())


def _seconds_or_none(value: Any) -> float | None:
    return None if value is None else _seconds(value, allow_zero=True)


_VALIDATORS = {
    "concurrency": lambda value: _whole_number(value, minimum=1),
    "poll_interval": lambda value: _seconds(value, allow_zero=False),
    "min_job_interval": lambda value: _seconds(value, allow_zero=True),
    "shutdown_timeout": lambda value: _seconds(value, allow_zero=True),
    "heartbeat_interval": lambda value: _seconds(value, allow_zero=False),
    "process_dead_after": lambda value: _seconds(value, allow_zero=False),
    "max_lost_attempts": lambda value: _whole_number(value, minimum=1),
    "unknown_task_releases": lambda value: _whole_number(value, minimum=0),
    "keep_successful": _seconds_or_none,
    "keep_failed": _seconds_or_none,
    "prune_interval": lambda value: _seconds(value, allow_zero=False),
    "recurring": _recurring,
    "recurring_interval": lambda value: _seconds(value, allow_zero=False),
    "database": _alias,
    "worker_queues": _selectors,
}


def validate_option(name: str, value: Any) -> Any:
    """Return the option's value as the runtime uses it, or raise ValueError."""
    validate = _VALIDATORS.get(name)
    if validate is None:
        known = ", ".join(sorted(_VALIDATORS))
        raise ValueError(f"Unknown option {name!r}. Known options: {known}.")
    try:
        return validate(value)
    except ValueError as exc:
        raise ValueError(f"Option {name!r}: {exc} (got {value!r}).") from None


def parse_options(options: Mapping[str, Any]) -> tuple[RuntimeOptions, list[str]]:
    """Return the options with defaults filled in, and a message per problem."""
    if not isinstance(options, Mapping):
        return RuntimeOptions(), [f"OPTIONS must be a dict, not {type(options)}."]
    errors = []
    values = {}
    for name, value in options.items():
        try:
            values[name] = validate_option(name, value)
        except ValueError as exc:
            errors.append(str(exc))
    return RuntimeOptions(**values), errors
