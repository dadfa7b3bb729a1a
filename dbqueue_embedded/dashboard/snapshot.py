"""Everything the dashboard shows about one backend, read at one moment."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Q
from django.db.models.functions import TruncMinute
from django.tasks import TaskResultStatus
from django.utils import timezone

from ..backend import DatabaseBackend
from ..models import Job, RecurringTick, WorkerProcess
from ..recurring import RecurringSchedule, recurring_schedules
from ..store.queues import QueueStats, queue_stats

# The charts' span, one bar per minute.
CHART_MINUTES = 60
RECENT_FAILURES = 10
RUNNING_SHOWN = 50


@dataclass(frozen=True, slots=True)
class Minute:
    """Jobs that finished in one minute."""

    start: datetime
    succeeded: int
    failed: int

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed


@dataclass(frozen=True, slots=True)
class RunningJob:
    job: Job
    # None when the claiming process's row is gone (it is being recovered).
    process: WorkerProcess | None

    @property
    def running_for(self) -> timedelta:
        started = self.job.last_attempted_at or self.job.started_at
        return timezone.now() - started if started else timedelta(0)


@dataclass(frozen=True, slots=True)
class Schedule:
    schedule: RecurringSchedule
    next_run: datetime | None
    # The latest tick any process fired; None if none yet.
    last_fired: datetime | None
    # Why next_run is None: the cron expression no longer parses.
    error: str = ""


@dataclass(frozen=True, slots=True)
class ProcessRow:
    process: WorkerProcess
    heartbeat_age: timedelta

    @property
    def alive(self) -> bool:
        return self.heartbeat_age <= self.process.dead_after

    @property
    def troubled_loops(self) -> list[str]:
        """The runtime's parts that restarted or are not running."""
        return [
            name
            for name, part in sorted(self.process.loops.items())
            if part.get("restarts") or part.get("state") != "running"
        ]


@dataclass(frozen=True, slots=True)
class Snapshot:
    backend: DatabaseBackend
    taken_at: datetime
    queues: list[QueueStats]
    minutes: list[Minute]
    running: list[RunningJob]
    failures: list[Job]
    schedules: list[Schedule]
    processes: list[ProcessRow]


def take_snapshot(backend: DatabaseBackend) -> Snapshot:
    now = timezone.now()
    jobs = Job.objects.using(backend.database).filter(backend=backend.alias)
    processes = list(
        WorkerProcess.objects.using(backend.database)
        .filter(backend=backend.alias)
        .order_by("hostname", "pid")
    )
    return Snapshot(
        backend=backend,
        taken_at=now,
        queues=queue_stats(using=backend.database, backend=backend.alias),
        minutes=_minutes(jobs, now),
        running=_running(jobs, {process.id: process for process in processes}),
        failures=list(
            jobs.filter(status=TaskResultStatus.FAILED).order_by("-finished_at")[
                :RECENT_FAILURES
            ]
        ),
        schedules=_schedules(backend, now),
        processes=[
            ProcessRow(process, max(timedelta(0), now - process.last_heartbeat_at))
            for process in processes
        ],
    )


def _minutes(jobs: Any, now: datetime) -> list[Minute]:
    """Jobs finished per minute over the last CHART_MINUTES, oldest first.

    Counted from the jobs the retention keeps: with ``keep_successful=0``
    successful jobs are gone before they can be counted.
    """
    first = (now - timedelta(minutes=CHART_MINUTES - 1)).replace(
        second=0, microsecond=0
    )
    counts = {
        row["minute"]: row
        for row in jobs.filter(
            finished_at__gte=first,
            status__in=[TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED],
        )
        .annotate(minute=TruncMinute("finished_at"))
        .values("minute")
        .annotate(
            succeeded=Count("id", filter=Q(status=TaskResultStatus.SUCCESSFUL)),
            failed=Count("id", filter=Q(status=TaskResultStatus.FAILED)),
        )
    }
    minutes = []
    for offset in range(CHART_MINUTES):
        start = first + timedelta(minutes=offset)
        row = counts.get(start, {})
        minutes.append(Minute(start, row.get("succeeded", 0), row.get("failed", 0)))
    return minutes


def _running(jobs: Any, processes: dict[str, WorkerProcess]) -> list[RunningJob]:
    running = jobs.filter(status=TaskResultStatus.RUNNING).order_by(
        "last_attempted_at"
    )[:RUNNING_SHOWN]
    return [RunningJob(job, processes.get(job.claimed_by)) for job in running]


def _schedules(backend: DatabaseBackend, now: datetime) -> list[Schedule]:
    fired = dict(
        RecurringTick.objects.using(backend.database)
        .filter(backend=backend.alias)
        .values("key")
        .annotate(latest=Max("tick_at"))
        .values_list("key", "latest")
    )
    schedules = []
    for schedule in recurring_schedules(backend.alias):
        try:
            next_run, error = schedule.next_tick(now), ""
        except Exception as exc:  # a stored schedule a newer croniter rejects
            next_run, error = None, f"{type(exc).__name__}: {exc}"
        schedules.append(Schedule(schedule, next_run, fired.get(schedule.key), error))
    return schedules
