"""The store: exclusive claims, fenced outcomes, release, and the claim's plan."""

import dataclasses
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.tasks import TaskResultStatus, default_task_backend
from django.test import override_settings
from django.utils import timezone

from dbqueue_embedded import store
from dbqueue_embedded.models import Job
from dbqueue_embedded.runtime.outcomes import released_outcome
from dbqueue_embedded.selectors import parse_selectors
from tests.conftest import register_process, requires_postgres, requires_sqlite
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)
ALL = parse_selectors(["*"])


def claim(limit=10, worker_id="worker-1", selectors=ALL):
    register_process(worker_id)
    return store.claim_batch(
        using="default",
        backend="default",
        selectors=selectors,
        limit=limit,
        worker_id=worker_id,
    )


def succeeded(job, value="42"):
    return store.Outcome(
        job_id=job.id,
        claim_token=job.claim_token,
        status=TaskResultStatus.SUCCESSFUL,
        finished_at=timezone.now(),
        return_value_json=value,
        errors=job.errors,
    )


def test_a_claim_marks_jobs_running_for_one_worker():
    results = [tasks.add.enqueue(index, 1) for index in range(3)]
    claimed = claim(limit=2)
    assert [str(job.id) for job in claimed] == [result.id for result in results[:2]]
    assert claim(limit=5, worker_id="worker-2")[0].id == uuid.UUID(results[2].id)
    assert claim() == []
    job = Job.objects.get(id=claimed[0].id)
    assert job.status == TaskResultStatus.RUNNING
    assert job.worker_ids == ["worker-1"]
    assert job.claimed_by == "worker-1"
    assert job.claim_token == claimed[0].claim_token
    assert job.started_at == job.last_attempted_at


def test_claims_in_parallel_never_share_a_job():
    default_task_backend.bulk_enqueue([(tasks.noop, (), {})] * 300)
    claimed: dict[str, list] = {}
    start = threading.Barrier(4)

    def claim_until_empty(worker_id):
        start.wait()
        mine = claimed[worker_id] = []
        try:
            while jobs := claim(limit=7, worker_id=worker_id):
                mine += [job.id for job in jobs]
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=claim_until_empty, args=(f"w{index}",))
        for index in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every_claim = [job_id for jobs in claimed.values() for job_id in jobs]
    assert len(every_claim) == len(set(every_claim)) == 300


def test_an_outcome_ends_the_claim_it_came_from_once():
    tasks.add.enqueue(1, 2)
    [job] = claim()
    assert store.finish_claims([succeeded(job)], using="default") == {job.id}
    # The same claim cannot end twice.
    assert store.finish_claims([succeeded(job, "0")], using="default") == set()
    row = Job.objects.get(id=job.id)
    assert (row.status, row.return_value, row.claim_token, row.claimed_by) == (
        TaskResultStatus.SUCCESSFUL,
        42,
        None,
        "",
    )


def test_an_outcome_from_a_lost_claim_changes_nothing():
    tasks.add.enqueue(1, 2)
    [first] = claim(worker_id="slow-worker")
    # The claim is taken away (released), and the job claimed again elsewhere.
    assert store.finish_claims(
        [released_outcome(first, "test release")], using="default"
    ) == {first.id}
    [second] = claim(worker_id="fresh-worker")
    assert second.id == first.id
    assert second.claim_token != first.claim_token

    assert store.finish_claims([succeeded(first, "666")], using="default") == set()
    row = Job.objects.get(id=first.id)
    assert row.status == TaskResultStatus.RUNNING
    assert row.claim_token == second.claim_token
    assert row.return_value is None

    assert store.finish_claims([succeeded(second)], using="default") == {second.id}


def test_a_released_job_is_ready_again_with_its_attempt_recorded():
    result = tasks.add.enqueue(1, 2)
    [job] = claim(worker_id="stopping-worker")
    store.finish_claims([released_outcome(job, "stopped at shutdown")], using="default")
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert result.worker_ids == ["stopping-worker"]
    [error] = result.errors
    assert error.exception_class_path == "dbqueue_embedded.exceptions.JobInterrupted"
    assert "stopped at shutdown" in error.traceback
    [again] = claim(worker_id="next-worker")
    assert again.worker_ids == ["stopping-worker", "next-worker"]
    assert again.started_at == job.started_at  # the first attempt's start


def test_one_statement_ends_many_claims_and_rejects_only_the_stale():
    default_task_backend.bulk_enqueue([(tasks.noop, (), {})] * 5)
    jobs = claim()
    stale = dataclasses.replace(succeeded(jobs[0]), claim_token=uuid.uuid4())
    accepted = store.finish_claims(
        [stale, *(succeeded(job) for job in jobs[1:])], using="default"
    )
    assert accepted == {job.id for job in jobs[1:]}
    assert Job.objects.filter(status=TaskResultStatus.SUCCESSFUL).count() == 4


@override_settings(
    TASKS={
        "default": {"BACKEND": "dbqueue_embedded.backend.DatabaseBackend"},
        "other": {"BACKEND": "dbqueue_embedded.backend.DatabaseBackend"},
    }
)
def test_jobs_of_other_backends_are_not_claimed():
    other = tasks.noop.using(backend="other").enqueue()
    assert claim() == []
    assert Job.objects.get(id=other.id).backend == "other"


def _fill_with_history():
    """Ready jobs behind plenty of finished and future ones."""
    default_task_backend.bulk_enqueue(
        [(tasks.noop.using(queue_name="emails"), (), {})] * 2000
    )
    while jobs := claim(limit=500):
        store.finish_claims([succeeded(job) for job in jobs], using="default")
    future = timezone.now() + timedelta(days=1)
    default_task_backend.bulk_enqueue(
        [(tasks.noop.using(run_after=future, priority=100), (), {})] * 2000
    )
    default_task_backend.bulk_enqueue([(tasks.noop, (), {})] * 20)


@requires_postgres
@pytest.mark.parametrize(
    ("selector", "index"),
    [("*", "dbqueue_job_ready"), ("emails", "dbqueue_job_ready_queue")],
)
def test_the_claim_reads_only_the_partial_index_of_ready_jobs(selector, index):
    """Without fresh statistics (no ANALYZE), the plan still uses the index."""
    _fill_with_history()
    statement, params = store.claim_statement(
        connection, parse_selectors([selector])[0]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN " + statement,
            {
                **params,
                "backend": "default",
                "now": timezone.now(),
                "limit": 10,
                "token": str(uuid.uuid4()),
                "worker_id": "w",
            },
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"Index Scan using {index} on dbqueue_embedded_job" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "Sort" not in plan, plan


@requires_sqlite
def test_the_sqlite_claim_uses_the_partial_index():
    _fill_with_history()
    statement, params = store.claim_statement(connection, ALL[0])
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN QUERY PLAN " + statement,
            {
                **params,
                "backend": "default",
                "now": str(timezone.now()),
                "limit": 10,
                "token": uuid.uuid4().hex,
                "worker_id": "w",
            },
        )
        plan = "\n".join(str(row) for row in cursor.fetchall())
    assert "USING INDEX dbqueue_job_ready" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


@requires_sqlite
def test_the_runtimes_sqlite_connections_use_wal_and_wait_for_the_lock():
    def runtime_connection_settings():
        store.prepare_runtime_connection(using="default")
        with connection.cursor() as cursor:
            settings = {}
            for pragma in ("journal_mode", "synchronous", "busy_timeout"):
                cursor.execute(f"PRAGMA {pragma}")
                settings[pragma] = cursor.fetchone()[0]
        connections.close_all()
        return settings

    seen = []
    thread = threading.Thread(target=lambda: seen.append(runtime_connection_settings()))
    thread.start()
    thread.join()
    # synchronous=1 is NORMAL; the project's own connections keep FULL (2).
    assert seen == [{"journal_mode": "wal", "synchronous": 1, "busy_timeout": 20000}]
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == 2
