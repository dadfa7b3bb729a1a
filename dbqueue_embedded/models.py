"""Tables of the queue.

Rows are read with the ORM anywhere, but every change to a job's state goes
through :mod:`dbqueue_embedded.store`; nothing else writes job rows.
"""

import uuid
from datetime import timedelta
from typing import Any

from django.db import NotSupportedError, models
from django.db.models import Value
from django.db.models.functions import Now
from django.tasks import TaskResultStatus
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY

from .conf import QUEUE_NAME_MAX_LENGTH

# A job waiting for its concurrency key to free up; reported as READY.
BLOCKED = "BLOCKED"


class Job(models.Model):
    """One enqueued task and, once it ran, its outcome."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    backend = models.CharField(max_length=64)
    queue_name = models.CharField(max_length=QUEUE_NAME_MAX_LENGTH)
    task_path = models.TextField()
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(
        max_length=10,
        choices=[*TaskResultStatus.choices, (BLOCKED, "Blocked")],
        default=TaskResultStatus.READY,
    )
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    # What the caller asked for; None means "as soon as possible".
    run_after = models.DateTimeField(null=True, blank=True)
    # When the job may next be claimed: run_after, or the enqueue time.
    available_at = models.DateTimeField()
    enqueued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    return_value = models.JSONField(null=True, blank=True)
    # One {"exception_class_path", "traceback"} object per failed attempt.
    errors = models.JSONField(default=list)
    # One worker id per attempt, appended when the attempt is claimed.
    worker_ids = models.JSONField(default=list)
    # Set by each claim, cleared when the claim ends. A finish or release must
    # present the token of the claim it came from (fencing).
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    # The worker holding the claim, or "" when none does.
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    # When someone asked for the running attempt to be cancelled.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # The task's unique key for this call: no other job of the backend with
    # the same key may wait (READY or BLOCKED), or run with
    # unique_until_finished, meanwhile.
    # Cleared ("") when the job starts, unless unique_until_finished.
    # Database defaults too: processes of the previous release insert jobs
    # without these columns during a rolling deploy.
    unique_key = models.CharField(max_length=255, blank=True, default="", db_default="")
    unique_until_finished = models.BooleanField(default=False, db_default=False)
    # The task's concurrency key for this call, and what it allows: at most
    # concurrency_limit jobs with the key hold a lease (READY or RUNNING) at
    # once; the others wait BLOCKED. See store.concurrency.
    concurrency_key = models.CharField(
        max_length=255, blank=True, default="", db_default=""
    )
    concurrency_limit = models.PositiveIntegerField(default=0, db_default=0)
    concurrency_lease = models.DurationField(null=True, blank=True)
    # A named multi-step job (see dbqueue_embedded.named_jobs): its name in
    # settings.JOBS, and the workspace its steps share. task_path is then the
    # step to run next. "" and None for a task's job.
    name = models.CharField(max_length=100, blank=True, default="", db_default="")
    workspace = models.JSONField(null=True, blank=True)
    # What the running attempt last reported through its context (see
    # results.Progress.as_json): {"done", "total", "message", "updated_at"}.
    # Cleared by each claim, so an attempt starts without progress; kept
    # once the attempt ends. Nullable: processes of the previous release
    # insert jobs without it during a rolling deploy.
    progress = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [
            # The claim of "any queue": only ready rows, in claim order, so
            # finished and running rows never slow it down and its plan
            # does not depend on fresh planner statistics.
            models.Index(
                "backend",
                models.F("priority").desc(),
                "available_at",
                "id",
                name="dbqueue_job_ready",
                condition=models.Q(status=TaskResultStatus.READY),
            ),
            # The claim of one named queue.
            models.Index(
                "backend",
                "queue_name",
                models.F("priority").desc(),
                "available_at",
                "id",
                name="dbqueue_job_ready_queue",
                condition=models.Q(status=TaskResultStatus.READY),
            ),
            # Running jobs by the worker holding them: the recovery sweep and
            # each runtime's look for cancel requests.
            models.Index(
                "claimed_by",
                name="dbqueue_job_running",
                condition=models.Q(status=TaskResultStatus.RUNNING),
            ),
            # Blocked jobs by key, in the order they get a lease.
            models.Index(
                "backend",
                "concurrency_key",
                models.F("priority").desc(),
                "available_at",
                "id",
                name="dbqueue_job_blocked",
                condition=models.Q(status=BLOCKED),
            ),
            # Finished jobs by age: retention and dbqueue_prune.
            models.Index(
                "backend",
                "status",
                "finished_at",
                name="dbqueue_job_finished",
                condition=models.Q(
                    status__in=[TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED]
                ),
            ),
            # Listings of the latest jobs (admin, dashboards, the example).
            models.Index(models.F("enqueued_at").desc(), name="dbqueue_job_latest"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["backend", "unique_key"],
                name="dbqueue_job_unique_key",
                condition=~models.Q(unique_key="")
                & models.Q(
                    status__in=[
                        TaskResultStatus.READY,
                        TaskResultStatus.RUNNING,
                        BLOCKED,
                    ]
                ),
            ),
            models.CheckConstraint(
                condition=models.Q(
                    priority__gte=TASK_MIN_PRIORITY, priority__lte=TASK_MAX_PRIORITY
                ),
                name="dbqueue_job_priority_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} ({self.id})"


class WorkerProcess(models.Model):
    """A running queue runtime, embedded in a web process or standalone."""

    class Mode(models.TextChoices):
        STANDALONE = "standalone"
        EMBEDDED = "embedded"

    id = models.CharField(max_length=64, primary_key=True)
    backend = models.CharField(max_length=64)
    mode = models.CharField(max_length=16, choices=Mode.choices)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.PositiveIntegerField()
    # The most database connections the process may hold (see runtime.budget).
    connection_budget = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(db_default=Now())
    # Written by the process itself, on the database's clock, so that
    # processes on hosts with skewed clocks judge each other fairly.
    last_heartbeat_at = models.DateTimeField(db_default=Now())
    # How long the process may stay silent before others presume it dead: its
    # own setting, so processes with different settings judge each other
    # fairly. Rows of runtimes that predate it get a patient default.
    dead_after = models.DurationField(db_default=timedelta(seconds=60))
    # The state of each of the runtime's loops at the last heartbeat:
    # {name: {"state", "restarts", "last_error"}}.
    loops = models.JSONField(default=dict, db_default=Value({}, models.JSONField()))
    # When the process began a graceful stop: the jobs it still runs are
    # shown as STOPPING (see NamedJob), and go back to the queue unless they
    # finish in time.
    stopping_since = models.DateTimeField(null=True, blank=True)
    # What the process enqueued and ran since it started, written with each
    # heartbeat for the metrics endpoint (see metrics.counters).
    metrics = models.JSONField(default=dict, db_default=Value({}, models.JSONField()))

    class Meta:
        verbose_name_plural = "worker processes"

    def __str__(self) -> str:
        return self.id


class QueuePause(models.Model):
    """A paused queue: no process claims its jobs until it is resumed."""

    backend = models.CharField(max_length=64)
    queue_name = models.CharField(max_length=QUEUE_NAME_MAX_LENGTH)
    paused_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "backend", "queue_name", name="dbqueue_queuepause_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.queue_name} ({self.backend})"


class RecurringTask(models.Model):
    """A recurring task scheduled through the Python API (not in OPTIONS)."""

    backend = models.CharField(max_length=64)
    key = models.CharField(max_length=200)
    task_path = models.TextField()
    schedule = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC")
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    # "" and None: the task's own queue and priority.
    queue_name = models.CharField(max_length=QUEUE_NAME_MAX_LENGTH, blank=True)
    priority = models.SmallIntegerField(null=True, blank=True)
    # What to do about a tick no process fired in time: "skip" or "run_once".
    missed = models.CharField(max_length=10, default="skip")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "backend", "key", name="dbqueue_recurringtask_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key}: {self.schedule}"


class RecurringTick(models.Model):
    """One tick of a recurring task, fired (or skipped) once across processes.

    The unique constraint is what makes a tick fire exactly once however many
    processes look at the schedule.
    """

    backend = models.CharField(max_length=64)
    key = models.CharField(max_length=200)
    tick_at = models.DateTimeField()
    # The job enqueued for the tick; None if the tick was skipped.
    job_id = models.UUIDField(null=True, blank=True)
    fired_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "backend", "key", "tick_at", name="dbqueue_recurringtick_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} at {self.tick_at}"


class ConcurrencyLease(models.Model):
    """One of the ``limit`` slots of a concurrency key, held by one job.

    The unique slot is what bounds the jobs of a key: a job is READY or
    RUNNING only while it holds a lease.
    """

    backend = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    slot = models.PositiveIntegerField()
    job_id = models.UUIDField(unique=True)
    # Taken plus the job's concurrency_lease: past this, a job still waiting
    # to be claimed gives the lease up (see store.concurrency).
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "backend", "key", "slot", name="dbqueue_concurrencylease_slot"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} slot {self.slot}: {self.job_id}"


def _named_job_state() -> models.Case:
    """A named job's state, as django-db-queue names it, from the job's row."""
    stopping = models.Exists(
        WorkerProcess.objects.filter(
            id=models.OuterRef("claimed_by"), stopping_since__isnull=False
        )
    )
    running = TaskResultStatus.RUNNING
    return models.Case(
        models.When(stopping, status=running, then=Value("STOPPING")),
        models.When(status=running, then=Value("PROCESSING")),
        models.When(status=TaskResultStatus.SUCCESSFUL, then=Value("COMPLETED")),
        models.When(status=TaskResultStatus.FAILED, then=Value("FAILED")),
        # Waiting (READY or BLOCKED): NEW until its first step has started.
        models.When(started_at__isnull=True, then=Value("NEW")),
        default=Value("READY"),
        output_field=models.CharField(),
    )


class NamedJobQuerySet(models.QuerySet):
    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list["NamedJob"]:
        """Create the jobs as ``create_jobs()`` does: creation hooks included,
        in one INSERT; one that cannot be created means none is."""
        from .named_jobs import create_jobs

        if args or kwargs:
            raise TypeError(
                "NamedJob.objects.bulk_create() takes only the jobs: they are "
                "inserted through the queue, all at once."
            )
        return create_jobs(objs)


class NamedJobManager(models.Manager.from_queryset(NamedJobQuerySet)):
    def get_queryset(self) -> NamedJobQuerySet:
        return (
            super().get_queryset().exclude(name="").annotate(state=_named_job_state())
        )


class NamedJob(Job):
    """A named multi-step job of ``settings.JOBS``: django-db-queue's ``Job``.

    Created with ``NamedJob.objects.create(name=..., workspace=...)`` (or
    ``dbqueue_embedded.named_jobs.create_job``); from then on only the queue
    changes it. Each instance carries ``state`` (see ``STATES``), and
    ``next_task``: the step to run next ("" once the job completed; the step
    that failed, for a failed job).
    """

    class STATES(models.TextChoices):
        NEW = "NEW"
        READY = "READY"
        PROCESSING = "PROCESSING"
        # Its process was asked to stop while a step ran: the step finishes,
        # or goes back to the queue to run again.
        STOPPING = "STOPPING"
        COMPLETED = "COMPLETED"
        FAILED = "FAILED"

    objects = NamedJobManager()

    # Set from the row by the manager's queries (and by the queue itself).
    state: str

    class Meta:
        proxy = True
        ordering = ["-priority", "enqueued_at"]

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Create the job (see ``create_jobs()``); an existing job cannot be saved."""
        from .named_jobs import create_jobs

        if not self._state.adding:
            raise NotSupportedError(
                f"Job {self.id} exists: only the queue changes a job once it is "
                "created. Steps and hooks change job.workspace, which the queue "
                "saves after each step."
            )
        create_jobs([self])

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        super().refresh_from_db(*args, **kwargs)
        self.state = (
            type(self)
            .objects.using(self._state.db)
            .values_list("state", flat=True)
            .get(pk=self.pk)
        )

    @property
    def next_task(self) -> str:
        return "" if self.status == TaskResultStatus.SUCCESSFUL else self.task_path

    @staticmethod
    def get_queue_depths(
        *, exclude_future_jobs: bool = False, backend: str = "default"
    ) -> dict[str, int]:
        """See ``dbqueue_embedded.named_jobs.get_queue_depths``."""
        from .named_jobs import get_queue_depths

        return get_queue_depths(
            exclude_future_jobs=exclude_future_jobs, backend=backend
        )
