"""``DatabaseBackend``: Django's task backend API on top of the queue tables."""

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import NotSupportedError, connections, router
from django.tasks import Task, TaskResult, TaskResultStatus, task_backends
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone

from . import payloads
from .conf import QUEUE_NAME_MAX_LENGTH, parse_options
from .exceptions import UnknownTask
from .results import build_result, import_task
from .routers import QueueRouter
from .task import QueueTask, validate_options

# Models and the store import lazily: Django builds backends while task
# modules are imported, which may be before the app registry is ready.


class DatabaseBackend(BaseTaskBackend):
    """Stores tasks as rows; the embedded runtime or ``dbqueue_worker`` runs them."""

    # Django's Task plus retries and a timeout (see dbqueue_embedded.task).
    task_class = QueueTask

    # Tasks may set run_after; they are not claimed before that time.
    supports_defer = True
    # ``async def`` tasks run on the runtime's event loop.
    supports_async_task = True
    # Results live in the database and can be read from any process.
    supports_get_result = True
    # Higher-priority jobs are claimed first.
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.runtime_options, self.option_errors = parse_options(self.options)

    @property
    def database(self) -> str:
        """The database alias holding the queue tables: ``OPTIONS["database"]``,
        or where the database routers put them."""
        from .models import Job

        return self.runtime_options.database or router.db_for_write(Job)

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        if isinstance(task, QueueTask):
            validate_options(task)
        if len(task.queue_name) > QUEUE_NAME_MAX_LENGTH:
            raise InvalidTask(
                f"Queue name {task.queue_name!r} is longer than "
                f"{QUEUE_NAME_MAX_LENGTH} characters."
            )

    def enqueue(
        self, task: Task, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> TaskResult:
        """Store the task call as a READY job and return its result handle.

        Inside ``transaction.atomic()`` on the queue's database, the job is
        written (and rolled back) with the caller's transaction.
        """
        [result] = self.bulk_enqueue([(task, args, kwargs)])
        return result

    def bulk_enqueue(
        self, calls: Iterable[tuple[Task, Sequence[Any], Mapping[str, Any]]]
    ) -> list[TaskResult]:
        """Enqueue many task calls in as few statements as possible.

        ``calls`` holds ``(task, args, kwargs)`` tuples. Every call is
        validated and encoded before anything is written: one bad call raises
        and writes nothing.
        """
        from . import store, wakeups

        calls = list(calls)
        # Validate each distinct Task object once; holding them keeps ids unique.
        validated: dict[int, Task] = {}
        jobs = []
        results = []
        for (task, args, kwargs), enqueued_at in zip(
            calls, _enqueue_times(len(calls)), strict=True
        ):
            if id(task) not in validated:
                self.validate_task(task)
                validated[id(task)] = task
            job, result = self._prepare(task, args, kwargs, enqueued_at)
            jobs.append(job)
            results.append(result)
        if not jobs:
            return []
        using = self.database
        stored_ids = store.insert_jobs(jobs, using=using)
        wakeups.jobs_enqueued(
            using=using,
            backend=self.alias,
            queue_names={job.queue_name for job in jobs},
        )
        for index, (job, stored_id) in enumerate(zip(jobs, stored_ids, strict=True)):
            # As stored: the job holding a unique key instead of a duplicate,
            # or a job failed at once because its concurrency key was full.
            if stored_id != job.id or job.discard_on_conflict:
                results[index] = self.get_result(str(stored_id))
            if stored_id == job.id:
                task_enqueued.send(type(self), task_result=results[index])
        return results

    async def abulk_enqueue(
        self, calls: Iterable[tuple[Task, Sequence[Any], Mapping[str, Any]]]
    ) -> list[TaskResult]:
        """See bulk_enqueue()."""
        return await sync_to_async(self.bulk_enqueue, thread_sensitive=True)(
            list(calls)
        )

    def _prepare(
        self,
        task: Task,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        enqueued_at: datetime,
    ) -> tuple[Any, TaskResult]:
        from .store import NewJob

        stored_args = payloads.round_trip(args)
        stored_kwargs = payloads.round_trip(kwargs)
        unique_key = concurrency_key = None
        if isinstance(task, QueueTask):
            unique_key = task.unique_key_for(stored_args, stored_kwargs)
            concurrency_key = task.concurrency_key_for(stored_args, stored_kwargs)
        job_id = uuid.uuid4()
        job = NewJob(
            id=job_id,
            backend=self.alias,
            queue_name=task.queue_name,
            task_path=task.module_path,
            priority=int(task.priority),
            args=stored_args,
            kwargs=stored_kwargs,
            run_after=task.run_after,
            available_at=task.run_after or enqueued_at,
            enqueued_at=enqueued_at,
            unique_key=unique_key,
            unique_until_finished=unique_key is not None
            and task.unique_until == "finished",
            concurrency_key=concurrency_key,
            concurrency_limit=task.concurrency_limit if concurrency_key else 0,
            concurrency_lease=(
                timedelta(seconds=task.concurrency_lease) if concurrency_key else None
            ),
            discard_on_conflict=bool(concurrency_key) and task.on_conflict == "discard",
        )
        result = build_result(
            task,
            id=job_id,
            status=TaskResultStatus.READY,
            backend=self.alias,
            args=stored_args,
            kwargs=stored_kwargs,
            enqueued_at=enqueued_at,
        )
        return job, result

    def get_result(self, result_id: str) -> TaskResult:
        """Read a result from the database, from any thread or process.

        Raises TaskResultDoesNotExist for unknown or malformed ids (and for
        named jobs, which have no task: see NamedJob), and UnknownTask (an
        ImportError) if the job's task can no longer be imported.
        """
        from .models import Job
        from .results import result_from_job

        try:
            job = Job.objects.using(self.database).get(id=_job_id(result_id), name="")
        except Job.DoesNotExist:
            raise TaskResultDoesNotExist(result_id) from None
        return result_from_job(job)

    def cancel(self, result_id: str) -> TaskResult:
        """Cancel a job and return its result as it is afterwards.

        A job waiting in the queue (READY, including one waiting to be
        retried) is FAILED at once with a JobCancelled error and never runs.
        For a RUNNING job, cancellation is requested: its process passes the
        request on within ``heartbeat_interval`` seconds; an ``async def``
        task is cancelled, a sync task sees ``context.cancel_requested`` (see
        JobContext) and fails with JobCancelled if it raises it. A job that
        finishes anyway keeps its outcome.

        Raises TaskResultDoesNotExist for an unknown id, and
        JobNotCancellable if the job has already finished.
        """
        from . import store
        from .models import Job

        try:
            store.cancel_job(_job_id(result_id), using=self.database)
        except Job.DoesNotExist:
            raise TaskResultDoesNotExist(result_id) from None
        return self.get_result(result_id)

    async def acancel(self, result_id: str) -> TaskResult:
        """See cancel()."""
        return await sync_to_async(self.cancel, thread_sensitive=True)(result_id)

    def retry(self, result_id: str) -> TaskResult:
        """Run a FAILED job again (the same job, a new attempt); return its result.

        The job is READY at once, keeps its errors, and fails for good when
        this attempt fails (unless ``max_attempts`` allows more). Raises
        TaskResultDoesNotExist for an unknown id, and JobNotFailed if the job
        is not FAILED.
        """
        from . import store

        self._only_failed(result_id, store.retry_failed_jobs, "retried")
        return self.get_result(result_id)

    async def aretry(self, result_id: str) -> TaskResult:
        """See retry()."""
        return await sync_to_async(self.retry, thread_sensitive=True)(result_id)

    def discard(self, result_id: str) -> None:
        """Delete a FAILED job and its result.

        Raises TaskResultDoesNotExist for an unknown id, and JobNotFailed if
        the job is not FAILED.
        """
        from . import store

        self._only_failed(result_id, store.discard_failed_jobs, "discarded")

    async def adiscard(self, result_id: str) -> None:
        """See discard()."""
        await sync_to_async(self.discard, thread_sensitive=True)(result_id)

    def _only_failed(
        self,
        result_id: str,
        change: Callable[..., list[uuid.UUID]],
        verb: str,
    ) -> None:
        from .exceptions import JobNotFailed
        from .models import Job

        job_id = _job_id(result_id)
        jobs = Job.objects.using(self.database).filter(
            id=job_id, backend=self.alias, name=""
        )
        if not jobs.exists():
            raise TaskResultDoesNotExist(result_id)
        if change([job_id], using=self.database):
            return
        status = jobs.values_list("status", flat=True).first()
        if status is None:
            raise TaskResultDoesNotExist(result_id)
        raise JobNotFailed(f"Job {job_id} is {status}; only FAILED jobs can be {verb}.")

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        messages: list[checks.CheckMessage] = []
        if not apps.is_installed("dbqueue_embedded"):
            messages.append(
                checks.Error(
                    f"The task backend {self.alias!r} needs the dbqueue_embedded app.",
                    hint="Add 'dbqueue_embedded' to INSTALLED_APPS.",
                    id="dbqueue_embedded.E001",
                )
            )
        messages.extend(
            checks.Error(
                f"TASKS[{self.alias!r}]['OPTIONS'] is not valid. {error}",
                id="dbqueue_embedded.E002",
            )
            for error in self.option_errors
        )
        for selector in self.runtime_options.worker_queues:
            name = selector.exact_name
            if self.queues and name is not None and name not in self.queues:
                messages.append(
                    checks.Error(
                        f"TASKS[{self.alias!r}]['OPTIONS']['worker_queues'] names "
                        f"queue {name!r}, which is not in QUEUES.",
                        hint="Add it to QUEUES, or remove it from worker_queues.",
                        id="dbqueue_embedded.E003",
                    )
                )
        for schedule in self.runtime_options.recurring:
            try:
                import_task(schedule.task_path)
            except UnknownTask as exc:
                messages.append(
                    checks.Error(
                        f"TASKS[{self.alias!r}]['OPTIONS']['recurring'][{schedule.key!r}]"
                        f": {exc}",
                        id="dbqueue_embedded.E006",
                    )
                )
        database = self.runtime_options.database
        if database is not None and database not in settings.DATABASES:
            messages.append(
                checks.Error(
                    f"TASKS[{self.alias!r}]['OPTIONS']['database'] is {database!r}, "
                    "which is not in DATABASES.",
                    id="dbqueue_embedded.E007",
                )
            )
            return messages
        if database is not None and not any(
            path == "dbqueue_embedded.routers.QueueRouter"
            or isinstance(path, QueueRouter)
            for path in settings.DATABASE_ROUTERS
        ):
            messages.append(
                checks.Warning(
                    f"The task backend {self.alias!r} keeps its queue in database "
                    f"{database!r}, but migrations do not know it.",
                    hint="Add 'dbqueue_embedded.routers.QueueRouter' to "
                    "DATABASE_ROUTERS, then run migrate --database "
                    f"{database}.",
                    id="dbqueue_embedded.W001",
                )
            )
        if apps.is_installed("dbqueue_embedded"):
            messages.extend(self._check_database())
        return messages

    def _check_database(self) -> list[checks.CheckMessage]:
        from . import store
        from .checks import least_process_budget
        from .runtime.budget import pool_size

        connection = connections[self.database]
        try:
            store.dialect(connection)
        except NotSupportedError as exc:
            return [
                checks.Error(
                    f"The task backend {self.alias!r} stores jobs in database "
                    f"{self.database!r}. {exc}",
                    id="dbqueue_embedded.E004",
                )
            ]
        pool = pool_size(connection.settings_dict)
        needed = least_process_budget(self, connection.vendor)
        if pool is not None and pool < needed.from_django:
            return [
                checks.Error(
                    f"Django's connection pool for database {self.database!r} "
                    f"holds {pool} connections; a process running the queue may "
                    f"need {needed.from_django} ({needed}).",
                    hint="Raise OPTIONS['pool']['max_size'] (and min_size), or "
                    "lower the queue's OPTIONS['concurrency'].",
                    id="dbqueue_embedded.E005",
                )
            ]
        return []


def queue_backend(alias: str) -> DatabaseBackend:
    """The TASKS backend ``alias``, which must be this queue's.

    Raises Django's InvalidTaskBackend for an unknown alias, and
    ImproperlyConfigured for a backend of another kind.
    """
    backend = task_backends[alias]
    if not isinstance(backend, DatabaseBackend):
        raise ImproperlyConfigured(
            f"Task backend {alias!r} is {type(backend).__name__}, "
            "not dbqueue_embedded's DatabaseBackend."
        )
    return backend


def queue_backend_aliases() -> list[str]:
    """The TASKS aliases whose backend is this queue's."""
    return [
        alias
        for alias in settings.TASKS
        if isinstance(task_backends[alias], DatabaseBackend)
    ]


def _job_id(result_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(result_id))
    except ValueError:
        raise TaskResultDoesNotExist(result_id) from None


_clock_lock = threading.Lock()
_last_enqueue_time: datetime | None = None


def _enqueue_times(count: int) -> list[datetime]:
    """``count`` enqueue times: from now on, each strictly after the previous.

    Jobs with equal priority run in enqueue order; distinct timestamps keep
    that order even for jobs enqueued in the same microsecond, whether by one
    bulk call or by several threads of this process.
    """
    global _last_enqueue_time
    with _clock_lock:
        start = timezone.now()
        last = _last_enqueue_time
        if last is not None and last.tzinfo == start.tzinfo and start <= last:
            start = last + _MICROSECOND
        times = [start + _MICROSECOND * index for index in range(count)]
        if times:
            _last_enqueue_time = times[-1]
    return times


_MICROSECOND = timedelta(microseconds=1)
