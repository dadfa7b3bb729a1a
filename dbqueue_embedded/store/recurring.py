"""Firing recurring ticks: each tick is recorded once, with its job.

The tick row's unique constraint decides which process fires a tick; the job
is enqueued in the same transaction, so a tick is never recorded without its
job, nor enqueued twice.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from ..models import RecurringTick
from ..recurring import RecurringSchedule
from ..results import import_task

logger = logging.getLogger("dbqueue_embedded.recurring")


@dataclass(frozen=True, slots=True)
class FiredTick:
    key: str
    tick_at: datetime
    # The job enqueued, or None for a skipped or failed tick.
    job_id: str | None
    # "enqueued", "skipped" (missed) or "failed" (could not be enqueued).
    outcome: str


def fire_due_ticks(
    *,
    using: str,
    backend: str,
    schedules: Sequence[RecurringSchedule],
    now: datetime,
    missed_after: timedelta,
) -> list[FiredTick]:
    """Fire the latest tick of each schedule unless some process already did.

    A tick older than ``missed_after`` was missed: its schedule's ``missed``
    policy says whether it still runs (once) or is skipped.
    """
    due = {}
    for schedule in schedules:
        tick = schedule.latest_tick(now)
        if schedule.created_at is None or tick >= schedule.created_at:
            due[schedule.key] = (schedule, tick)
    if not due:
        return []
    recorded = set(
        RecurringTick.objects.using(using)
        .filter(backend=backend, key__in=list(due))
        .filter(tick_at__in=[tick for _, tick in due.values()])
        .values_list("key", "tick_at")
    )
    fired = []
    for schedule, tick in due.values():
        if (schedule.key, tick) in recorded:
            continue
        late = now - tick > missed_after
        fired.append(
            _fire(
                using, backend, schedule, tick, skip=late and schedule.missed == "skip"
            )
        )
    return [tick for tick in fired if tick is not None]


def _fire(
    using: str, backend: str, schedule: RecurringSchedule, tick: datetime, *, skip: bool
) -> FiredTick | None:
    with transaction.atomic(using=using):
        row, created = RecurringTick.objects.using(using).get_or_create(
            backend=backend, key=schedule.key, tick_at=tick
        )
        if not created:
            return None  # another process fired it just now
        if skip:
            return FiredTick(schedule.key, tick, None, "skipped")
        try:
            task = import_task(schedule.task_path)
            overrides = {"backend": backend}
            if schedule.queue_name is not None:
                overrides["queue_name"] = schedule.queue_name
            if schedule.priority is not None:
                overrides["priority"] = schedule.priority
            result = task.using(**overrides).enqueue(*schedule.args, **schedule.kwargs)
        except (ImportError, TypeError, ValueError) as exc:
            # Recorded as fired, so that it is not tried again every second.
            logger.error(
                "Recurring task %r: the tick of %s could not be enqueued: %s",
                schedule.key,
                tick.isoformat(),
                exc,
            )
            return FiredTick(schedule.key, tick, None, "failed")
        row.job_id = result.id
        row.save(update_fields=["job_id"])
    return FiredTick(schedule.key, tick, result.id, "enqueued")


def prune_ticks(*, using: str, backend: str, before: datetime) -> int:
    """Delete tick records older than ``before``; they only matter while due."""
    deleted, _ = (
        RecurringTick.objects.using(using)
        .filter(backend=backend, tick_at__lt=before)
        .delete()
    )
    return deleted
