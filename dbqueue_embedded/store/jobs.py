"""Enqueue, claim and end claims: the statements that move jobs between states."""

import json
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from types import ModuleType
from typing import Any

from django.db import NotSupportedError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Case, Value, When
from django.db.models.functions import Coalesce, Now
from django.tasks import TaskResultStatus
from django.tasks.base import TaskError
from django.utils import timezone

from .. import wakeups
from ..exceptions import JobCancelled, JobDiscarded, JobNotCancellable
from ..metrics.counters import job_counters
from ..models import BLOCKED, Job, QueuePause, WorkerProcess
from ..results import task_error
from ..selectors import QueueSelector
from . import concurrency, postgresql, sqlite
from .records import ClaimedJob, NewJob, Outcome, ProgressUpdate

logger = logging.getLogger("dbqueue_embedded.store")
_DIALECTS = {"postgresql": postgresql, "sqlite": sqlite}
# Per thread: the raw connection prepare_runtime_connection() last set up.
_prepared = threading.local()

_NEW_JOB = (
    "id",
    "backend",
    "queue_name",
    "task_path",
    "priority",
    "args",
    "kwargs",
    "run_after",
    "available_at",
    "enqueued_at",
    "status",
    "errors",
    "worker_ids",
    "claimed_by",
    "unique_key",
    "unique_until_finished",
    "concurrency_key",
    "concurrency_limit",
    "concurrency_lease",
    "finished_at",
    "name",
    "workspace",
)
_INSERT = "INSERT INTO {table} ({columns}) VALUES ({placeholders})"
# A unique job goes in unless a job with its key waits (or runs) already.
_UNLESS_KEY_HELD = """
    ON CONFLICT (backend, unique_key)
    WHERE NOT (unique_key = '') AND status IN ('READY', 'RUNNING', 'BLOCKED')
    DO NOTHING
    RETURNING id
"""
_KEY_HOLDER = """
    SELECT id FROM {table}
    WHERE backend = %s AND unique_key = %s
      AND status IN ('READY', 'RUNNING', 'BLOCKED')
"""
# Columns of an ended claim, with their PostgreSQL types. "json" columns hold
# JSON values; "jsonb" ones hold JSON encoded as text (a return value may be
# a bare string, which the document's JSON would otherwise unwrap).
_OUTCOME = (
    ("id", "uuid"),
    ("claim_token", "uuid"),
    ("status", "text"),
    ("finished_at", "timestamptz"),
    ("return_value", "jsonb"),
    ("errors", "json"),
    ("available_at", "timestamptz"),
    ("task_path", "text"),
    ("workspace", "jsonb"),
    ("progress", "jsonb"),
)
# Columns of a progress update.
_PROGRESS = (("id", "uuid"), ("claim_token", "uuid"), ("progress", "jsonb"))


def dialect(connection: BaseDatabaseWrapper) -> ModuleType:
    """The module holding this database's SQL, or NotSupportedError."""
    try:
        return _DIALECTS[connection.vendor]
    except KeyError:
        raise NotSupportedError(
            "dbqueue_embedded supports PostgreSQL and SQLite, "
            f"not {connection.display_name}."
        ) from None


def prepare_runtime_connection(*, using: str) -> None:
    """Configure this thread's connection for the runtime, once per connection.

    Runtime threads (claims, outcomes) call this before each store call; it
    only does work when the connection is new. See the dialects for what it
    sets.
    """
    connection = connections[using]
    connection.ensure_connection()
    if getattr(_prepared, using, None) is not connection.connection:
        with connection.cursor() as cursor:
            dialect(connection).prepare_connection(cursor)
        setattr(_prepared, using, connection.connection)


def insert_jobs(jobs: Sequence[NewJob], *, using: str) -> list[uuid.UUID]:
    """Insert new jobs of one backend: all of them, or (on error) none.

    Jobs are READY, except a job whose concurrency key is at its limit: it
    waits BLOCKED, or (discard on conflict) is FAILED with JobDiscarded.
    Returns the id of each job. A unique job whose key a waiting (or running)
    job holds is not inserted: its id in the result is that job's.
    Runtimes of other processes are woken once they commit (PostgreSQL).
    """
    connection = connections[using]
    sql = dialect(connection)
    table = connection.ops.quote_name(Job._meta.db_table)
    plain = [_row(job) for job in jobs if not (job.unique_key or job.concurrency_key)]
    special = [job for job in jobs if job.unique_key or job.concurrency_key]
    ids = [job.id for job in jobs]
    wake_up = wakeups.encode(jobs[0].backend, {job.queue_name for job in jobs})
    atomic = transaction.atomic(using=using, savepoint=False)
    with (
        atomic if len(jobs) > 1 or special else nullcontext(),
        connection.cursor() as cursor,
    ):
        if plain:
            sql.insert_rows(cursor, table, _NEW_JOB, plain, wake_up)
        elif special:
            sql.wake_up(cursor, wake_up)
        stored = {
            job.id: _insert_special(cursor, sql, table, job, using) for job in special
        }
    stored_ids = [stored.get(job_id, job_id) for job_id in ids]
    # For the metrics: the tasks' jobs inserted (not those a unique key
    # deduplicated; not named jobs, whose steps the metrics leave out), once
    # they are committed.
    inserted = Counter(
        (job.backend, job.queue_name, job.task_path)
        for job, stored_id in zip(jobs, stored_ids, strict=True)
        if stored_id == job.id and not job.name
    )
    transaction.on_commit(
        lambda: job_counters.count_enqueued(inserted), using=using, robust=True
    )
    return stored_ids


def _row(job: NewJob, status: str = "READY", errors: str = "[]") -> tuple:
    return (
        job.id,
        job.backend,
        job.queue_name,
        job.task_path,
        job.priority,
        _encode_json(job.args),
        _encode_json(job.kwargs),
        job.run_after,
        job.available_at,
        job.enqueued_at,
        status,
        errors,
        "[]",
        "",
        job.unique_key or "",
        job.unique_until_finished,
        job.concurrency_key or "",
        job.concurrency_limit,
        job.concurrency_lease,
        timezone.now() if status == TaskResultStatus.FAILED else None,
        job.name,
        None if job.workspace is None else _encode_json(job.workspace),
    )


def _insert_special(
    cursor: Any, sql: ModuleType, table: str, job: NewJob, using: str
) -> uuid.UUID:
    """Insert a unique or concurrency-limited job; return the id that stands for it."""
    status, errors = TaskResultStatus.READY, "[]"
    if job.concurrency_key and job.available_at > timezone.now():
        # A job for later takes no lease yet: the sweep promotes it once due.
        status = BLOCKED
    elif job.concurrency_key and not concurrency.acquire_lease(
        using=using,
        backend=job.backend,
        key=job.concurrency_key,
        limit=job.concurrency_limit,
        job_id=job.id,
        duration=job.concurrency_lease,
    ):
        if job.discard_on_conflict:
            error = JobDiscarded(
                f"Concurrency key {job.concurrency_key!r} was at its limit of "
                f"{job.concurrency_limit} when the job was enqueued."
            )
            status = TaskResultStatus.FAILED
            errors = _encode_json([error_value(task_error(error))])
        else:
            status = BLOCKED
    row = _row(job, status, errors)
    insert = _INSERT.format(
        table=table,
        columns=", ".join(_NEW_JOB),
        placeholders=", ".join(["%s"] * len(_NEW_JOB)),
    )
    if not job.unique_key:
        cursor.execute(insert, sql.encode_row(row))
        return job.id
    stored = _insert_unique(cursor, sql, table, job, insert + _UNLESS_KEY_HELD, row)
    if stored != job.id:  # a duplicate: it needs no lease
        concurrency.release_leases([job.id], using=using)
    return stored


def _insert_unique(
    cursor: Any, sql: ModuleType, table: str, job: NewJob, insert: str, row: tuple
) -> uuid.UUID:
    """Insert a unique job; return its id, or the id of the job holding its key."""
    while True:
        cursor.execute(insert, sql.encode_row(row))
        if cursor.fetchone() is not None:
            return job.id
        cursor.execute(_KEY_HOLDER.format(table=table), [job.backend, job.unique_key])
        holder = cursor.fetchone()
        if holder is not None:
            return sql.read_uuid(holder[0])
        # The holder finished between the two statements: insert after all.


def claim_batch(
    *,
    using: str,
    backend: str,
    selectors: Sequence[QueueSelector],
    limit: int,
    worker_id: str,
) -> list[ClaimedJob]:
    """Claim up to ``limit`` ready jobs, trying the selectors in order.

    Within a selector, higher priority goes first, then the earlier
    ``available_at`` (``run_after``, or the enqueue time), then the id.
    Jobs whose ``run_after`` lies in the future are not claimed.
    """
    connection = connections[using]
    sql = dialect(connection)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    token = uuid.uuid4()
    claimed: list[ClaimedJob] = []
    with connection.cursor() as cursor, sql.claim_transaction(cursor):
        for selector in selectors:
            statement, selector_params = claim_statement(connection, selector)
            cursor.execute(
                statement,
                {
                    "backend": backend,
                    "now": now,
                    "limit": limit - len(claimed),
                    "token": sql.encode_uuid(token),
                    "worker_id": worker_id,
                    **selector_params,
                },
            )
            jobs = [
                _read_claimed(sql, row, token, backend) for row in cursor.fetchall()
            ]
            jobs.sort(key=lambda job: (-job.priority, job.available_at, job.id))
            claimed += jobs
            if len(claimed) >= limit:
                break
    return claimed


def claim_statement(
    connection: BaseDatabaseWrapper, selector: QueueSelector
) -> tuple[str, dict[str, Any]]:
    """The SQL claiming jobs of one selector, with the selector's parameters.

    It also takes ``backend``, ``now``, ``limit``, ``token`` and ``worker_id``.
    """
    sql = dialect(connection)
    table = connection.ops.quote_name(Job._meta.db_table)
    processes_table = connection.ops.quote_name(WorkerProcess._meta.db_table)
    pauses_table = connection.ops.quote_name(QueuePause._meta.db_table)
    selector_sql, selector_params = _selector_filter(selector)
    # Only a registered worker claims: once a recovery sweep has removed a
    # worker presumed dead, its claims fail until it registers again, so it
    # cannot take jobs that the next sweep would hand to someone else.
    registered = f"EXISTS (SELECT 1 FROM {processes_table} WHERE id = %(worker_id)s)"
    not_paused = (
        f"NOT EXISTS (SELECT 1 FROM {pauses_table} AS pause "
        f"WHERE pause.backend = %(backend)s "
        f"AND pause.queue_name = {table}.queue_name)"
    )
    statement = sql.CLAIM.format(
        table=table,
        selector=f"{selector_sql} AND {not_paused} AND {registered}",
        assignments=(
            "status = 'RUNNING', claim_token = %(token)s, "
            "claimed_by = %(worker_id)s, "
            "started_at = COALESCE(started_at, %(now)s), last_attempted_at = %(now)s, "
            # Each attempt reports its own progress, from nothing.
            "progress = NULL, "
            f"worker_ids = {sql.APPEND_WORKER_ID}, "
            # A job unique until it starts lets duplicates in from now on.
            "unique_key = CASE WHEN unique_until_finished THEN unique_key ELSE '' END"
        ),
        returning=(
            f"{table}.id, queue_name, task_path, priority, available_at, enqueued_at, "
            f"run_after, started_at, last_attempted_at, {sql.CLAIMED_PAYLOAD}, "
            # The column itself: SQLite's RETURNING got "IS NOT NULL" wrong.
            "cancel_requested_at, name"
        ),
    )
    return statement, selector_params


def finish_claims(outcomes: Sequence[Outcome], *, using: str) -> set[uuid.UUID]:
    """End claims as finished, failed or released, in one statement.

    A released job (READY) becomes claimable at the outcome's
    ``available_at`` if it has one (a retry's backoff), at once otherwise.

    Returns the ids of the jobs whose claim was still held. An outcome whose
    claim was lost changes nothing and is left out of the result.
    """
    if not outcomes:
        return set()
    connection = connections[using]
    sql = dialect(connection)
    table = connection.ops.quote_name(Job._meta.db_table)
    rows = [
        {
            "id": sql.encode_uuid(outcome.job_id),
            "claim_token": sql.encode_uuid(outcome.claim_token),
            "status": outcome.status,
            "finished_at": sql.encode_datetime(outcome.finished_at),
            "return_value": outcome.return_value_json,
            "errors": [error_value(error) for error in outcome.errors],
            "available_at": sql.encode_datetime(outcome.available_at),
            "task_path": outcome.task_path,
            "workspace": outcome.workspace_json,
            "progress": outcome.progress_json,
        }
        for outcome in outcomes
    ]
    ended = _update_claimed(
        connection,
        rows,
        source=("outcome", _OUTCOME),
        assignments=f"""
            status = outcome.status,
            finished_at = outcome.finished_at,
            return_value = outcome.return_value,
            errors = outcome.errors,
            available_at = COALESCE(outcome.available_at, {table}.available_at),
            task_path = COALESCE(outcome.task_path, {table}.task_path),
            workspace = COALESCE(outcome.workspace, {table}.workspace),
            progress = COALESCE(outcome.progress, {table}.progress),
            claim_token = NULL,
            claimed_by = ''
        """,
        returning=f"{table}.id, {table}.concurrency_key, {table}.status",
    )
    # Jobs that finished hand their concurrency lease on (a job back in the
    # queue keeps it). Should this fail, the recovery sweep does it.
    finished = [
        sql.read_uuid(job_id)
        for job_id, key, status in ended
        if key and status != TaskResultStatus.READY
    ]
    if finished:
        try:
            concurrency.release_leases(finished, using=using)
        except Exception:
            # The outcomes are stored; the recovery sweep frees the leases.
            logger.exception(
                "Could not release the concurrency leases of %d finished job(s); "
                "the recovery sweep will.",
                len(finished),
            )
    return {sql.read_uuid(row[0]) for row in ended}


def record_progress(updates: Sequence[ProgressUpdate], *, using: str) -> set[uuid.UUID]:
    """Store the progress of running attempts, in one statement.

    Like an outcome, an update is fenced: it changes the job only while the
    job still carries the update's claim token, so an attempt whose claim
    ended (finished, released, recovered, claimed again) writes nothing.
    Returns the ids of the jobs written.
    """
    if not updates:
        return set()
    connection = connections[using]
    sql = dialect(connection)
    table = connection.ops.quote_name(Job._meta.db_table)
    rows = [
        {
            "id": sql.encode_uuid(update.job_id),
            "claim_token": sql.encode_uuid(update.claim_token),
            "progress": update.progress_json,
        }
        for update in updates
    ]
    written = _update_claimed(
        connection,
        rows,
        source=("reported", _PROGRESS),
        assignments="progress = reported.progress",
        returning=f"{table}.id",
    )
    return {sql.read_uuid(row[0]) for row in written}


def _update_claimed(
    connection: BaseDatabaseWrapper,
    rows: list[dict[str, Any]],
    *,
    source: tuple[str, Sequence[tuple[str, str]]],
    assignments: str,
    returning: str,
) -> list[tuple]:
    """UPDATE jobs from rows, each while the job still carries the row's claim.

    ``rows`` hold an ``id`` and a ``claim_token`` each, and travel as one JSON
    parameter; ``source`` names them (for ``assignments``) and gives their
    columns. Returns what ``returning`` selects of the rows updated.
    """
    sql = dialect(connection)
    table = connection.ops.quote_name(Job._meta.db_table)
    alias, columns = source
    statement = f"""
        UPDATE {table} SET {assignments}
        FROM {sql.rows(alias, columns)}
        WHERE {sql.among_ids(f"{table}.id")}
          AND {table}.id = {alias}.id AND {table}.claim_token = {alias}.claim_token
        RETURNING {returning}
    """
    ids = sql.ids_params([row["id"] for row in rows])
    with connection.cursor() as cursor:
        cursor.execute(statement, [_encode_json(rows), *ids])
        return cursor.fetchall()


def _encode_json(value: Any) -> str:
    if not value:  # the usual empty args and kwargs, without the encoder
        return "[]" if isinstance(value, list) else json.dumps(value)
    return json.dumps(value, separators=(",", ":"))


def error_value(error: TaskError) -> dict[str, str]:
    """An error as the job's ``errors`` column stores it."""
    return {
        "exception_class_path": error.exception_class_path,
        "traceback": error.traceback,
    }


def _selector_filter(selector: QueueSelector) -> tuple[str, dict[str, Any]]:
    if selector.matches_all:
        return "TRUE", {}
    if selector.prefix is not None:
        # substr() compares exactly on both databases, unlike LIKE (case
        # folding on SQLite) or a range (collation order on PostgreSQL).
        return "substr(queue_name, 1, %(prefix_length)s) = %(prefix)s", {
            "prefix_length": len(selector.prefix),
            "prefix": selector.prefix,
        }
    return "queue_name = %(queue_name)s", {"queue_name": selector.exact_name}


def _read_claimed(
    sql: ModuleType, row: Sequence[Any], token: uuid.UUID, backend: str
) -> ClaimedJob:
    args, kwargs, errors, worker_ids, workspace = json.loads(row[9])
    return ClaimedJob(
        id=sql.read_uuid(row[0]),
        claim_token=token,
        backend=backend,
        queue_name=row[1],
        task_path=row[2],
        priority=row[3],
        available_at=sql.read_datetime(row[4]),
        enqueued_at=sql.read_datetime(row[5]),
        run_after=sql.read_datetime(row[6]),
        started_at=sql.read_datetime(row[7]),
        last_attempted_at=sql.read_datetime(row[8]),
        args=args,
        kwargs=kwargs,
        errors=[TaskError(**error) for error in errors],
        worker_ids=worker_ids,
        cancel_requested=row[10] is not None,
        name=row[11],
        workspace=workspace,
    )


def cancel_job(job_id: uuid.UUID, *, using: str) -> TaskResultStatus:
    """Cancel a job: fail it if it waits in the queue, flag it if it runs.

    A READY (or BLOCKED) job becomes FAILED with a JobCancelled error at
    once; a lease it held goes to the next job of its key. A RUNNING
    job gets ``cancel_requested_at``: its runtime passes the request on to the
    task (see JobContext) and fails it if it is claimed again. Returns the
    status the job had as Django sees it (READY or RUNNING). Raises
    Job.DoesNotExist, or JobNotCancellable if the job already finished.
    """
    jobs = Job.objects.using(using)
    while True:
        status, errors, attempted_at = jobs.values_list(
            "status", "errors", "last_attempted_at"
        ).get(id=job_id)
        if status in (TaskResultStatus.READY, BLOCKED):
            error = task_error(JobCancelled("The job was cancelled before it ran."))
            # Unchanged since read: not run (and its errors grown) meanwhile.
            unchanged = {"status": status, "last_attempted_at": attempted_at}
            changed = jobs.filter(id=job_id, **unchanged).update(
                status=TaskResultStatus.FAILED,
                finished_at=timezone.now(),
                errors=[*errors, error_value(error)],
            )
        elif status == TaskResultStatus.RUNNING:
            changed = jobs.filter(id=job_id, status=status).update(
                cancel_requested_at=Coalesce("cancel_requested_at", Now())
            )
        else:
            raise JobNotCancellable(f"Job {job_id} has already finished ({status}).")
        if changed:
            if status == TaskResultStatus.READY:
                concurrency.release_leases([job_id], using=using)
            if status == BLOCKED:
                return TaskResultStatus.READY
            return TaskResultStatus(status)
        # Claimed or finished between the read and the write: look again.


def cancel_requests(worker_id: str, *, using: str) -> list[uuid.UUID]:
    """The jobs this worker runs whose cancellation was requested."""
    return list(
        Job.objects.using(using)
        .filter(
            status=TaskResultStatus.RUNNING,
            claimed_by=worker_id,
            cancel_requested_at__isnull=False,
        )
        .values_list("id", flat=True)
    )


def retry_failed_jobs(job_ids: Sequence[uuid.UUID], *, using: str) -> list[uuid.UUID]:
    """Put FAILED jobs back in the queue, to run at once: same job, new attempt.

    Their errors stay; a cancel request is forgotten. Returns the ids of the
    jobs that were FAILED (others are left as they are).
    """
    jobs = Job.objects.using(using).filter(
        id__in=job_ids, status=TaskResultStatus.FAILED
    )
    with transaction.atomic(using=using):
        rows = list(
            jobs.select_for_update().values_list(
                "id", "backend", "queue_name", "concurrency_key"
            )
        )
        jobs.filter(id__in=[row[0] for row in rows]).update(
            # A job with a concurrency key waits for a lease like a new one.
            status=Case(
                When(concurrency_key="", then=Value(TaskResultStatus.READY)),
                default=Value(BLOCKED),
            ),
            finished_at=None,
            return_value=None,
            available_at=Now(),
            cancel_requested_at=None,
            # Its key may be taken by now: a retried job does not dedupe.
            unique_key="",
        )
        wake_up([(row[1], row[2]) for row in rows if not row[3]], using=using)
        for backend, key in sorted({(row[1], row[3]) for row in rows if row[3]}):
            concurrency.promote_blocked(using=using, backend=backend, key=key)
    return [row[0] for row in rows]


def discard_failed_jobs(job_ids: Sequence[uuid.UUID], *, using: str) -> list[uuid.UUID]:
    """Delete FAILED jobs; return the ids of those deleted."""
    jobs = Job.objects.using(using).filter(
        id__in=job_ids, status=TaskResultStatus.FAILED
    )
    with transaction.atomic(using=using):
        ids = list(jobs.select_for_update().values_list("id", flat=True))
        jobs.filter(id__in=ids).delete()
    return ids


def wake_up(queues: Iterable[tuple[str, str]], *, using: str) -> None:
    """Wake runtimes for jobs that became ready in these (backend, queue name)
    pairs, once the transaction commits: by NOTIFY on PostgreSQL, and in this
    process."""
    connection = connections[using]
    by_backend: dict[str, set[str]] = {}
    for backend, queue_name in queues:
        by_backend.setdefault(backend, set()).add(queue_name)
    for backend, queue_names in by_backend.items():
        with connection.cursor() as cursor:
            dialect(connection).wake_up(cursor, wakeups.encode(backend, queue_names))
        wakeups.jobs_enqueued(using=using, backend=backend, queue_names=queue_names)
