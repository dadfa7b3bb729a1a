"""Recurring tasks: cron ticks enqueued exactly once across processes."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.utils import timezone

from dbqueue_embedded import recurring
from dbqueue_embedded.exceptions import UnknownTask
from dbqueue_embedded.models import Job, RecurringTask, RecurringTick
from dbqueue_embedded.recurring import (
    parse_schedule,
    schedule_recurring_task,
    unschedule_recurring_task,
)
from dbqueue_embedded.runtime.supervisor import Runtime
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

EVERY_SECOND = "* * * * * *"  # croniter: a sixth field counts seconds


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock(timezone.now().replace(microsecond=500_000) + timedelta(seconds=5))
    monkeypatch.setattr(recurring, "clock", fake)
    return fake


def add_every_second(**fields):
    return {
        "every-second": {
            "task": "tests.testapp.tasks.add",
            "schedule": EVERY_SECOND,
            "args": [1, 2],
            **fields,
        }
    }


def test_three_runtimes_enqueue_each_tick_exactly_once(clock, background_worker):
    for _ in range(3):
        background_worker(recurring=add_every_second(), recurring_interval=0.01)
    first = clock.now.replace(microsecond=0)
    ticks = RecurringTick.objects.filter(key="every-second")
    wait_for(lambda: ticks.filter(tick_at=first).exists())
    for second in range(1, 11):
        clock.now += timedelta(seconds=1)
        wait_for(lambda s=second: ticks.filter(tick_at=first + timedelta(seconds=s)))
        # Give the other runtimes time to try the same tick.
        wait_for(lambda s=second: Job.objects.filter(status="SUCCESSFUL").count() >= s)

    assert sorted(ticks.values_list("tick_at", flat=True)) == [
        first + timedelta(seconds=s) for s in range(11)
    ]
    jobs = Job.objects.filter(task_path="tests.testapp.tasks.add")
    assert jobs.count() == 11
    assert set(ticks.values_list("job_id", flat=True)) == set(
        jobs.values_list("id", flat=True)
    )
    assert all(job.args == [1, 2] for job in jobs)


@pytest.mark.parametrize(("missed", "jobs"), [("skip", 0), ("run_once", 1)])
def test_a_missed_tick_is_skipped_or_run_once(clock, background_worker, missed, jobs):
    # Ticks at 03:00; the only process starts long after, at noon.
    clock.now = clock.now.replace(hour=12, minute=0, second=0, microsecond=0)
    schedules = {
        "nightly": {
            "task": "tests.testapp.tasks.noop",
            "schedule": "0 3 * * *",
            "missed": missed,
        }
    }
    background_worker(recurring=schedules, recurring_interval=0.01)
    tick = wait_for(lambda: RecurringTick.objects.filter(key="nightly").first())
    assert tick.tick_at == clock.now.replace(hour=3)
    assert Job.objects.count() == jobs
    assert (tick.job_id is not None) == bool(jobs)


def test_dynamic_schedules_with_queue_priority_and_kwargs(clock, background_worker):
    schedule_recurring_task(
        "dynamic",
        "tests.testapp.tasks.echo",
        EVERY_SECOND,
        kwargs={"hello": "world"},
        queue_name="reports",
        priority=7,
    )
    background_worker(recurring_interval=0.01, worker_queues=["other"])
    job = wait_for(lambda: Job.objects.first())
    assert (job.queue_name, job.priority, job.kwargs) == (
        "reports",
        7,
        {"hello": "world"},
    )

    assert unschedule_recurring_task("dynamic")
    assert not unschedule_recurring_task("dynamic")
    count = Job.objects.count()
    clock.now += timedelta(seconds=3)
    # One more look at the schedules: nothing left to fire.
    wait_for(lambda: not RecurringTask.objects.exists())
    assert Job.objects.count() == count


def test_invalid_cron_expressions_are_rejected_at_configuration():
    with pytest.raises(ValueError, match="'61 \\* \\* \\* \\*' is not a valid cron"):
        schedule_recurring_task("bad", "tests.testapp.tasks.noop", "61 * * * *")
    with pytest.raises(ImproperlyConfigured, match="not a valid cron expression"):
        Runtime(recurring={"bad": {"task": "x.y", "schedule": "every day"}})
    tasks = {
        "default": {
            "BACKEND": "dbqueue_embedded.backend.DatabaseBackend",
            "OPTIONS": {"recurring": {"bad": {"task": "a.b", "schedule": "* *"}}},
        }
    }
    with override_settings(TASKS=tasks), pytest.raises(SystemCheckError) as error:
        call_command("check")
    assert "is not a valid cron expression" in str(error.value)
    assert not RecurringTask.objects.exists()


def test_other_bad_schedules_change_nothing():
    with pytest.raises(UnknownTask):
        schedule_recurring_task("missing", "tests.testapp.tasks.nope", EVERY_SECOND)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'"):
        schedule_recurring_task(
            "tz", "tests.testapp.tasks.noop", EVERY_SECOND, timezone="Mars/Base"
        )
    with pytest.raises(ValueError, match="arguments must be JSON"):
        schedule_recurring_task(
            "args", "tests.testapp.tasks.echo", EVERY_SECOND, args=[object()]
        )
    with pytest.raises(ValueError, match="'missed' must be"):
        schedule_recurring_task(
            "m", "tests.testapp.tasks.noop", EVERY_SECOND, missed="later"
        )
    assert not RecurringTask.objects.exists()


def test_an_unknown_task_in_options_is_a_check_error():
    tasks = {
        "default": {
            "BACKEND": "dbqueue_embedded.backend.DatabaseBackend",
            "OPTIONS": {
                "recurring": {
                    "gone": {
                        "task": "tests.testapp.tasks.nope",
                        "schedule": "* * * * *",
                    }
                }
            },
        }
    }
    with override_settings(TASKS=tasks), pytest.raises(SystemCheckError) as error:
        call_command("check")
    assert "dbqueue_embedded.E006" in str(error.value)


def test_ticks_follow_the_schedule_s_time_zone():
    schedule = parse_schedule(
        "paris", {"task": "a.b", "schedule": "0 9 * * *", "timezone": "Europe/Paris"}
    )
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)
    assert schedule.latest_tick(winter) == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
    assert schedule.latest_tick(summer) == datetime(2026, 7, 15, 7, 0, tzinfo=UTC)
    assert schedule.next_tick(winter) == datetime(2026, 1, 16, 8, 0, tzinfo=UTC)
