"""Concurrency limits: at most N jobs of one key run (or wait to run) at once."""

import uuid
from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus, default_task_backend
from django.tasks.exceptions import InvalidTask
from django.utils import timezone

from dbqueue_embedded import store, task_options
from dbqueue_embedded.models import BLOCKED, ConcurrencyLease, Job
from dbqueue_embedded.queues import QueueInfo
from dbqueue_embedded.selectors import parse_selectors
from tests.conftest import WorkerSubprocess, finished, register_process, wait_for
from tests.testapp.models import Execution
from tests.testapp.tasks import charge_account, export_once, sync_account

pytestmark = pytest.mark.django_db(transaction=True)


def runs(jobs):
    """(start, end) of each job's runs as the task recorded them, in start order.

    The task's own clock, not the job's claim time: a claim's time is taken
    before it waits for the database, so it may precede the end of the run
    that freed the key.
    """
    times = {}
    for execution in Execution.objects.filter(
        job_id__in=[str(job.id) for job in jobs]
    ).order_by("id"):
        times.setdefault(execution.job_id, {})[execution.label] = execution.created_at
    return sorted((t["start"], t["end"]) for t in times.values())


def most_at_once(jobs) -> int:
    events = sorted(
        [(start, 1) for start, _ in runs(jobs)] + [(end, -1) for _, end in runs(jobs)],
        key=lambda event: (event[0], event[1]),
    )
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def test_a_key_with_limit_1_never_runs_two_jobs_at_once_under_4_processes():
    for _ in range(10):
        charge_account.enqueue(1, 0.05)
        charge_account.enqueue(2, 0.05)
    assert Job.objects.filter(status=BLOCKED).count() == 18
    workers = [
        WorkerSubprocess("--concurrency", "4", "--poll-interval", "0.1")
        for _ in range(4)
    ]
    try:
        # A finished job's lease is released just after its outcome is
        # stored: wait for both before the workers go.
        wait_for(
            lambda: (
                not Job.objects.exclude(status="SUCCESSFUL").exists()
                and not ConcurrencyLease.objects.exists()
            ),
            60,
        )
    finally:
        for worker in workers:
            worker.kill()
    for account in (1, 2):
        jobs = Job.objects.filter(concurrency_key=f"account:{account}")
        assert most_at_once(jobs) == 1
        # Blocked jobs got the key in the order they were enqueued.
        starts = dict(
            Execution.objects.filter(label="start").values_list("job_id", "created_at")
        )
        by_start = sorted(jobs, key=lambda job: starts[str(job.id)])
        assert by_start == list(jobs.order_by("enqueued_at"))
    # Different keys do not wait for each other.
    assert most_at_once(Job.objects.all()) == 2


def test_a_limit_of_2_runs_two_at_once(background_worker):
    for _ in range(6):
        sync_account.enqueue(7, 0.2)
    background_worker(concurrency=6)
    wait_for(lambda: not Job.objects.exclude(status="SUCCESSFUL").exists(), 30)
    assert most_at_once(Job.objects.all()) == 2


def test_a_blocked_job_reads_as_ready_and_counts_as_blocked():
    running = charge_account.enqueue(5)
    waiting = charge_account.enqueue(5)
    assert running.status == waiting.status == TaskResultStatus.READY
    assert Job.objects.get(id=waiting.id).status == BLOCKED
    assert default_task_backend.get_result(waiting.id).status == TaskResultStatus.READY
    stats = QueueInfo("default").stats()
    assert (stats.ready, stats.blocked) == (1, 1)


def test_discard_on_conflict_fails_the_duplicate_at_once(run_worker):
    first = export_once.enqueue("sales")
    second = export_once.enqueue("sales")
    assert second.status == TaskResultStatus.FAILED
    [error] = second.errors
    assert error.exception_class_path == "dbqueue_embedded.exceptions.JobDiscarded"
    assert "'export:sales' was at its limit of 1" in error.traceback
    run_worker()
    assert finished(first)
    assert first.status == TaskResultStatus.SUCCESSFUL
    assert export_once.enqueue("sales").status == TaskResultStatus.READY


def test_the_lease_of_a_dead_process_s_job_goes_on_with_the_job(background_worker):
    lost = charge_account.enqueue(9)
    waiting = charge_account.enqueue(9)
    register_process("ghost", heartbeat_age=timedelta(minutes=5))
    [claimed] = store.claim_batch(
        using="default",
        backend="default",
        selectors=parse_selectors(["*"]),
        limit=1,
        worker_id="ghost",
    )
    assert str(claimed.id) == lost.id
    background_worker(heartbeat_interval=0.1, process_dead_after=0.5)
    wait_for(lambda: finished(waiting), 30)
    lost.refresh()
    assert lost.status == TaskResultStatus.SUCCESSFUL
    assert lost.errors[0].exception_class_path.endswith("WorkerLost")
    [first, second] = runs(Job.objects.all())
    assert second[0] >= first[1]


def test_the_sweep_frees_a_lease_its_job_never_released(background_worker):
    # As if a process died between finishing a job and releasing its lease.
    ConcurrencyLease.objects.create(
        backend="default",
        key="account:4",
        slot=0,
        job_id=uuid.uuid4(),
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    blocked = charge_account.enqueue(4)
    assert Job.objects.get(id=blocked.id).status == BLOCKED
    background_worker(heartbeat_interval=0.1, process_dead_after=0.5)
    wait_for(lambda: finished(blocked), 30)


def test_cancel_and_retry_respect_the_key(background_worker):
    first = charge_account.enqueue(6)
    blocked = charge_account.enqueue(6)
    default_task_backend.cancel(blocked.id)
    assert Job.objects.get(id=blocked.id).status == "FAILED"
    default_task_backend.cancel(first.id)  # its lease goes (to nobody)
    assert not ConcurrencyLease.objects.exists()

    third = charge_account.enqueue(6)
    default_task_backend.retry(blocked.id)
    assert Job.objects.get(id=blocked.id).status == BLOCKED  # behind the third
    background_worker()
    wait_for(lambda: finished(third))
    wait_for(lambda: finished(default_task_backend.get_result(blocked.id)))


def test_clearing_a_queue_hands_the_key_on():
    charge_account.enqueue(8)
    later = charge_account.using(queue_name="later").enqueue(8)
    QueueInfo("default").clear()
    assert Job.objects.get(id=later.id).status == "READY"


def test_invalid_concurrency_options_are_rejected_at_import():
    with pytest.raises(InvalidTask, match="concurrency_limit must be"):
        task_options(concurrency_limit=0)(charge_account)
    with pytest.raises(InvalidTask, match="on_conflict must be"):
        task_options(on_conflict="queue")(charge_account)
    with pytest.raises(InvalidTask, match="names 'user'"):
        task_options(concurrency_key="u:{user}")(charge_account)


def test_a_lease_held_too_long_by_a_waiting_job_is_handed_on(background_worker):
    QueueInfo("slow").pause()
    stuck = charge_account.using(queue_name="slow").enqueue(11)
    waiting = charge_account.enqueue(11)
    assert Job.objects.get(id=waiting.id).status == BLOCKED
    ConcurrencyLease.objects.filter(job_id=stuck.id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    background_worker(heartbeat_interval=0.1, process_dead_after=0.5)
    wait_for(lambda: finished(waiting), 30)
    # It queues for the key again, behind the job that waited.
    wait_for(lambda: Job.objects.get(id=stuck.id).status == "READY")


def test_a_job_for_later_does_not_hold_the_key_until_it_is_due(background_worker):
    later = charge_account.using(run_after=timezone.now() + timedelta(hours=1))
    tomorrow = later.enqueue(12)
    now = charge_account.enqueue(12)
    assert Job.objects.get(id=tomorrow.id).status == BLOCKED
    background_worker(heartbeat_interval=0.1, process_dead_after=0.5)
    wait_for(lambda: finished(now), 30)
    assert Job.objects.get(id=tomorrow.id).status == BLOCKED
