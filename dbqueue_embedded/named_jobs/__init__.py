"""Named multi-step jobs: django-db-queue's ``JOBS``, run by this queue.

A named job is a row of the job table like a task's job. Its ``task_path``
is the step to run next and ``workspace`` is the dict its steps share. One
claim runs one step: a step that returns puts the job back in the queue at
the next step with its workspace saved, so a process that dies loses at most
the step it was running, which then runs again. See ``steps`` for the hooks
around each step, and ``config`` for the setting.
"""

from collections.abc import Iterable
from contextlib import ExitStack
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.db.models.functions import Now
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, TaskResultStatus
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
from django.utils import timezone

from .. import payloads, store, wakeups
from ..conf import QUEUE_NAME_MAX_LENGTH
from ..exceptions import CreationHookFailed, InvalidJob
from ..models import BLOCKED, Job, NamedJob
from ..task import is_priority
from .config import function, job_definitions

__all__ = ["NamedJob", "create_job", "create_jobs", "get_queue_depths"]


def create_job(
    name: str,
    *,
    workspace: dict[str, Any] | None = None,
    queue_name: str = "default",
    priority: int = 0,
    run_after: datetime | None = None,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
) -> NamedJob:
    """Create one job of ``settings.JOBS`` (see ``create_jobs()``)."""
    [job] = create_jobs(
        [
            NamedJob(
                name=name,
                workspace=workspace,
                queue_name=queue_name,
                priority=priority,
                run_after=run_after,
                backend=backend,
            )
        ]
    )
    return job


def create_jobs(jobs: Iterable[NamedJob]) -> list[NamedJob]:
    """Create unsaved ``NamedJob`` objects: each job's creation hook runs in
    this process, then all are inserted at once, at their first step.

    Every job is checked, and every creation hook run, before anything is
    written: a bad job (InvalidJob) or a hook that raises
    (CreationHookFailed) means none is created. Inside ``transaction.atomic()``
    on the queue's database, the jobs are written with the transaction.
    """
    from ..backend import queue_backend

    jobs = list(jobs)
    definitions = job_definitions()
    for job in jobs:
        if not job._state.adding:
            raise InvalidJob(f"Job {job.id} exists already.")
        definition = definitions.get(job.name)
        if definition is None:
            known = ", ".join(map(repr, definitions)) or "none"
            raise InvalidJob(
                f"There is no job named {job.name!r} in settings.JOBS (known: {known})."
            )
        job.backend = job.backend or DEFAULT_TASK_BACKEND_ALIAS
        job.queue_name = job.queue_name or "default"
        job.workspace = {} if job.workspace is None else job.workspace
        job.task_path = definition.tasks[0]
        _check_workspace_type(job)
        if definition.creation_hook:
            _run_creation_hook(definition.creation_hook, job)
        # Checked after the hook: it may have changed the job.
        _check(job, queue_backend(job.backend).queues)
    now = timezone.now()
    by_backend: dict[str, list[NamedJob]] = {}
    for job in jobs:
        by_backend.setdefault(job.backend, []).append(job)
    databases = {alias: queue_backend(alias).database for alias in by_backend}
    with ExitStack() as atomic:
        for database in set(databases.values()):
            atomic.enter_context(transaction.atomic(using=database))
        for alias, backend_jobs in by_backend.items():
            store.insert_jobs(
                [_new_job(job, now) for job in backend_jobs], using=databases[alias]
            )
    for alias, backend_jobs in by_backend.items():
        wakeups.jobs_enqueued(
            using=databases[alias],
            backend=alias,
            queue_names={job.queue_name for job in backend_jobs},
        )
        for job in backend_jobs:
            job.status, job.state = TaskResultStatus.READY, NamedJob.STATES.NEW
            job.enqueued_at, job.available_at = now, job.run_after or now
            job._state.adding, job._state.db = False, databases[alias]
    return jobs


def get_queue_depths(
    *, exclude_future_jobs: bool = False, backend: str = DEFAULT_TASK_BACKEND_ALIAS
) -> dict[str, int]:
    """Jobs waiting in each queue of the backend: ``{queue_name: count}``.

    Every waiting job counts, named or a task's; queues without one are left
    out. Jobs whose time has not come yet (``run_after``, a retry's delay)
    count unless ``exclude_future_jobs``.
    """
    from ..backend import queue_backend

    jobs = Job.objects.using(queue_backend(backend).database).filter(
        backend=backend, status__in=[TaskResultStatus.READY, BLOCKED]
    )
    if exclude_future_jobs:
        jobs = jobs.filter(available_at__lte=Now())
    counts = jobs.values("queue_name").order_by("queue_name").annotate(n=Count("id"))
    return {row["queue_name"]: row["n"] for row in counts}


def _run_creation_hook(path: str, job: NamedJob) -> None:
    try:
        function(path)(job)
    except Exception as exc:
        raise CreationHookFailed(
            f"The creation hook {path} of job {job.name!r} raised "
            f"{type(exc).__name__}: {exc}. No job was created."
        ) from exc


def _check_workspace_type(job: NamedJob) -> None:
    if not isinstance(job.workspace, dict):
        raise InvalidJob(
            f"Job {job.name!r}: the workspace must be a dict, "
            f"not {type(job.workspace).__name__}."
        )


def _check(job: NamedJob, queues: set[str]) -> None:
    where = f"Job {job.name!r}"
    _check_workspace_type(job)
    try:
        job.workspace = payloads.round_trip(job.workspace)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"{where}: the workspace is not JSON: {exc}") from None
    if (
        not isinstance(job.queue_name, str)
        or len(job.queue_name) > QUEUE_NAME_MAX_LENGTH
    ):
        raise InvalidJob(
            f"{where}: the queue name must be a string of at most "
            f"{QUEUE_NAME_MAX_LENGTH} characters."
        )
    if queues and job.queue_name not in queues:
        raise InvalidJob(
            f"{where}: queue {job.queue_name!r} is not one of the backend's QUEUES."
        )
    if not is_priority(job.priority):
        raise InvalidJob(
            f"{where}: priority must be a whole number between {TASK_MIN_PRIORITY} "
            f"and {TASK_MAX_PRIORITY}, not {job.priority!r}."
        )
    run_after = job.run_after
    if run_after is not None and (
        not isinstance(run_after, datetime)
        or (settings.USE_TZ and timezone.is_naive(run_after))
    ):
        raise InvalidJob(f"{where}: run_after must be an aware datetime or None.")


def _new_job(job: NamedJob, now: datetime) -> store.NewJob:
    return store.NewJob(
        id=job.id,
        backend=job.backend,
        queue_name=job.queue_name,
        task_path=job.task_path,
        priority=job.priority,
        args=[],
        kwargs={},
        run_after=job.run_after,
        available_at=job.run_after or now,
        enqueued_at=now,
        name=job.name,
        workspace=job.workspace,
    )
