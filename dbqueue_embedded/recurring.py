"""Recurring tasks: a cron schedule that enqueues a task at each tick.

Static schedules live in the backend's ``OPTIONS["recurring"]``::

    "recurring": {
        "nightly-report": {
            "task": "shop.tasks.build_report",
            "schedule": "0 3 * * *",          # cron; a 6th field is seconds
            "timezone": "Europe/Paris",
            "kwargs": {"kind": "daily"},
        },
    }

Dynamic ones are added and removed at run time::

    schedule_recurring_task("cleanup", "shop.tasks.cleanup", "*/15 * * * *")
    unschedule_recurring_task("cleanup")

Every runtime looks at the schedules; each tick is enqueued exactly once
however many processes run, because the tick is recorded under a unique
constraint in the same transaction as its job. A tick that no process fired
in time (nothing ran, the database was down) is *missed*; ``missed="skip"``
(the default) drops it, ``missed="run_once"`` enqueues it late, once, however
many ticks were missed.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.tasks import Task
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
from django.utils import timezone

from . import payloads
from .task import is_priority

MISSED_POLICIES = ("skip", "run_once")
_FIELDS = {
    "task",
    "schedule",
    "timezone",
    "args",
    "kwargs",
    "queue_name",
    "priority",
    "missed",
}

# The time schedules are judged by; tests replace it to drive ticks.
clock: Callable[[], datetime] = timezone.now


@dataclass(frozen=True, slots=True)
class RecurringSchedule:
    key: str
    task_path: str
    schedule: str
    timezone: str = "UTC"
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    # None: the task's own queue and priority.
    queue_name: str | None = None
    priority: int | None = None
    missed: str = "skip"
    # From OPTIONS (True) or the Python API (False).
    static: bool = True
    # Dynamic schedules: ticks before this are not missed, just not due yet.
    created_at: datetime | None = None

    def latest_tick(self, now: datetime) -> datetime:
        """The last tick at or before ``now``."""
        local = now.astimezone(ZoneInfo(self.timezone))
        return croniter(self.schedule, local).get_prev(datetime)

    def next_tick(self, now: datetime) -> datetime:
        local = now.astimezone(ZoneInfo(self.timezone))
        return croniter(self.schedule, local).get_next(datetime)


def parse_schedule(key: Any, value: Any, *, static: bool = True) -> RecurringSchedule:
    """A schedule from its OPTIONS form, or ValueError saying what is wrong."""
    if not isinstance(key, str) or not key or len(key) > 200:
        raise ValueError(
            f"Recurring task key {key!r} must be a string of 1-200 characters."
        )
    where = f"Recurring task {key!r}"
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a dict, not {type(value).__name__}.")
    unknown = set(value) - _FIELDS
    if unknown:
        raise ValueError(
            f"{where} has unknown field(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_FIELDS))}."
        )
    for required in ("task", "schedule"):
        if required not in value:
            raise ValueError(f"{where} needs a {required!r}.")
    task = value["task"]
    task_path = task.module_path if isinstance(task, Task) else task
    if not isinstance(task_path, str) or "." not in task_path:
        raise ValueError(f"{where}: 'task' must be a dotted path, not {task!r}.")
    schedule = value["schedule"]
    if not isinstance(schedule, str) or not croniter.is_valid(schedule):
        raise ValueError(f"{where}: {schedule!r} is not a valid cron expression.")
    zone = value.get("timezone", "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"{where}: unknown time zone {zone!r}.") from None
    args, kwargs = value.get("args", []), value.get("kwargs", {})
    if not isinstance(args, list | tuple) or not isinstance(kwargs, Mapping):
        raise ValueError(f"{where}: 'args' must be a list and 'kwargs' a dict.")
    try:
        args, kwargs = (
            payloads.round_trip(list(args)),
            payloads.round_trip(dict(kwargs)),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: arguments must be JSON: {exc}") from None
    queue_name = value.get("queue_name")
    if queue_name is not None and (not isinstance(queue_name, str) or not queue_name):
        raise ValueError(f"{where}: 'queue_name' must be a non-empty string.")
    priority = value.get("priority")
    if priority is not None and not is_priority(priority):
        raise ValueError(
            f"{where}: 'priority' must be a whole number from {TASK_MIN_PRIORITY} "
            f"to {TASK_MAX_PRIORITY}."
        )
    missed = value.get("missed", "skip")
    if missed not in MISSED_POLICIES:
        raise ValueError(
            f"{where}: 'missed' must be 'skip' or 'run_once', not {missed!r}."
        )
    return RecurringSchedule(
        key=key,
        task_path=task_path,
        schedule=schedule,
        timezone=zone,
        args=args,
        kwargs=kwargs,
        queue_name=queue_name,
        priority=priority,
        missed=missed,
        static=static,
    )


def schedule_recurring_task(
    key: str,
    task: Task | str,
    schedule: str,
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    queue_name: str | None = None,
    priority: int | None = None,
    timezone: str = "UTC",
    missed: str = "skip",
    backend: str = "default",
) -> RecurringSchedule:
    """Add (or replace) the recurring task ``key`` on ``backend``.

    Checked at once: an invalid cron expression, time zone, argument or
    option, a task that cannot be imported or a key that OPTIONS already use
    raises ValueError (or UnknownTask) and changes nothing.
    """
    from .backend import queue_backend
    from .models import RecurringTask
    from .results import import_task

    found = queue_backend(backend)
    parsed = parse_schedule(
        key,
        {
            "task": task,
            "schedule": schedule,
            "timezone": timezone,
            "args": list(args),
            "kwargs": dict(kwargs or {}),
            "queue_name": queue_name,
            "priority": priority,
            "missed": missed,
        },
        static=False,
    )
    if key in {s.key for s in found.runtime_options.recurring}:
        raise ValueError(
            f"Recurring task {key!r} is defined in OPTIONS['recurring']; "
            "change it there."
        )
    import_task(parsed.task_path)
    RecurringTask.objects.using(found.database).update_or_create(
        backend=found.alias,
        key=key,
        defaults={
            "task_path": parsed.task_path,
            "schedule": parsed.schedule,
            "timezone": parsed.timezone,
            "args": parsed.args,
            "kwargs": parsed.kwargs,
            "queue_name": parsed.queue_name or "",
            "priority": parsed.priority,
            "missed": parsed.missed,
        },
    )
    return parsed


def unschedule_recurring_task(key: str, *, backend: str = "default") -> bool:
    """Remove a recurring task added with schedule_recurring_task().

    False if there was none; ValueError for a task defined in OPTIONS.
    """
    from .backend import queue_backend
    from .models import RecurringTask

    found = queue_backend(backend)
    if key in {s.key for s in found.runtime_options.recurring}:
        raise ValueError(
            f"Recurring task {key!r} is defined in OPTIONS['recurring']; "
            "remove it there."
        )
    deleted, _ = (
        RecurringTask.objects.using(found.database)
        .filter(backend=found.alias, key=key)
        .delete()
    )
    return bool(deleted)


def recurring_schedules(backend: str = "default") -> list[RecurringSchedule]:
    """Every schedule of ``backend``: OPTIONS' first, then the dynamic ones."""
    from .backend import queue_backend

    found = queue_backend(backend)
    return [
        *found.runtime_options.recurring,
        *dynamic_schedules(using=found.database, backend=found.alias),
    ]


def dynamic_schedules(*, using: str, backend: str) -> list[RecurringSchedule]:
    """The schedules added through schedule_recurring_task()."""
    from .models import RecurringTask

    rows = RecurringTask.objects.using(using).filter(backend=backend).order_by("key")
    return [
        RecurringSchedule(
            key=row.key,
            task_path=row.task_path,
            schedule=row.schedule,
            timezone=row.timezone,
            args=row.args,
            kwargs=row.kwargs,
            queue_name=row.queue_name or None,
            priority=row.priority,
            missed=row.missed,
            static=False,
            created_at=row.created_at,
        )
        for row in rows
    ]
