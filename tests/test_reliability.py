"""Retries, timeouts, cancellation, recovery of lost claims, fencing, quarantine.

Processes presumed dead are simulated with process rows whose heartbeat is
old, or with real runtimes whose heartbeats are rarer than another runtime's
patience; the SIGKILL case runs a real worker process.
"""

import logging
import signal
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.tasks import TaskResultStatus, default_task_backend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.utils import timezone

from dbqueue_embedded import JobNotCancellable, QueueTask, store, task_options
from dbqueue_embedded.models import Job, WorkerProcess
from dbqueue_embedded.runtime.outcomes import released_outcome
from dbqueue_embedded.selectors import parse_selectors
from dbqueue_embedded.store import recovery
from dbqueue_embedded.task import OPTION_NAMES
from tests.conftest import (
    WorkerSubprocess,
    finished,
    insert_jobs_with_paths,
    register_process,
    wait_for,
)
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

WORKER_LOST = "dbqueue_embedded.exceptions.WorkerLost"
# Runtime options for a fast sweep: dead after 0.5 s of silence.
FAST_SWEEP = {"heartbeat_interval": 0.05, "process_dead_after": 0.5}


def job_of(result):
    return Job.objects.get(id=result.id)


def error_classes(result):
    return [error.exception_class_path for error in result.errors]


def claim_as(worker_id):
    register_process(worker_id)
    [job] = store.claim_batch(
        using="default",
        backend="default",
        selectors=parse_selectors(["*"]),
        limit=1,
        worker_id=worker_id,
    )
    return job


def look_silent(runtime):
    """Make a runtime's row say it has not beaten for an hour."""
    WorkerProcess.objects.filter(id=runtime.worker_id).update(
        last_heartbeat_at=timezone.now() - timedelta(hours=1)
    )


def sweep(max_lost_attempts=3):
    """One recovery sweep, as a runtime runs it."""
    recovery.remove_dead_processes(using="default", backend="default")
    return recovery.recover_lost_claims(
        using="default", backend="default", max_lost_attempts=max_lost_attempts
    )


# -- retries -------------------------------------------------------------------


def finish(result, background_worker):
    """Run a worker until the job has finished (retries included)."""
    background_worker()
    wait_for(lambda: finished(result))


def test_a_failed_attempt_is_retried_and_the_result_tells_every_attempt(
    background_worker,
):
    result = tasks.flaky.enqueue(2)
    finish(result, background_worker)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 3
    assert result.attempts == 3
    assert error_classes(result) == ["builtins.ConnectionError"] * 2
    assert "attempt 1" in result.errors[0].traceback
    assert "attempt 2" in result.errors[1].traceback
    assert result.last_attempted_at > result.started_at


def test_retries_stop_at_max_attempts(background_worker):
    result = tasks.flaky.enqueue(5)
    finish(result, background_worker)
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 3
    assert len(result.errors) == 3


def test_an_exception_outside_retry_on_fails_at_once(run_worker):
    result = tasks.flaky.enqueue(1, error="ValueError")
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert (result.attempts, error_classes(result)) == (1, ["builtins.ValueError"])


def test_tasks_are_not_retried_by_default(run_worker):
    result = tasks.fail_value_error.enqueue()
    run_worker()
    result.refresh()
    assert (result.status, result.attempts) == (TaskResultStatus.FAILED, 1)


def test_a_retry_waits_its_backoff(run_worker):
    result = tasks.fail_then_wait.enqueue()
    run_worker()  # exits: the retry is not due for 15-30 s
    job = job_of(result)
    assert job.status == TaskResultStatus.READY
    wait = (job.available_at - job.last_attempted_at).total_seconds()
    assert 15 <= wait <= 31


@pytest.mark.parametrize("failures", [1, 2, 3, 8, 20, 40])
def test_retry_backoff_doubles_within_its_bounds(failures):
    options = task_options(retry_delay=2, retry_max_delay=100)(tasks.noop)
    ceiling = min(100, 2 * 2 ** (failures - 1))
    delays = [options.retry_backoff(failures) for _ in range(200)]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 100  # jittered


def test_task_options_build_a_queue_task_and_refuse_bad_values():
    configured = task_options(max_attempts=4, timeout=2.5)(tasks.add)
    assert isinstance(configured, QueueTask)
    assert (configured.max_attempts, configured.timeout) == (4, 2.5)
    assert configured.module_path == tasks.add.module_path
    with pytest.raises(TypeError, match="Unknown task option"):
        task_options(attempts=4)
    with pytest.raises(InvalidTask, match="max_attempts must be at least 1"):
        task_options(max_attempts=0)(tasks.add)
    with pytest.raises(InvalidTask, match="retry_on must be a tuple of exception"):
        task_options(retry_on=ValueError)(tasks.add)
    with pytest.raises(InvalidTask, match="timeout must be more than zero"):
        task_options(timeout=0)(tasks.add)
    with pytest.raises(InvalidTask, match="retry_max_delay"):
        task_options(retry_delay=10, retry_max_delay=1)(tasks.add)
    assert set(OPTION_NAMES) <= set(QueueTask.__dataclass_fields__)


def test_on_django_6_1_the_task_decorator_takes_the_options():
    import django
    from django.tasks import task

    if django.VERSION < (6, 1):
        with pytest.raises(TypeError):
            task(max_attempts=3)(tasks.add.func)
        return
    configured = task(max_attempts=3, retry_on=(OSError,))(tasks.add.func)
    assert isinstance(configured, QueueTask)
    assert (configured.max_attempts, configured.retry_on) == (3, (OSError,))


# -- timeouts ------------------------------------------------------------------


def test_an_async_task_is_cancelled_at_its_timeout(run_worker):
    result = tasks.async_sleep_with_timeout.enqueue(30)
    started = time.monotonic()
    run_worker()
    assert time.monotonic() - started < 10
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert error_classes(result) == ["dbqueue_embedded.exceptions.JobTimeout"]
    assert "timeout of 0.3 s and was cancelled" in result.errors[0].traceback


def test_a_sync_task_fails_at_its_timeout_and_its_late_result_is_discarded(
    background_worker, caplog
):
    caplog.set_level(logging.WARNING, logger="dbqueue_embedded")
    result = tasks.sleep_with_timeout.enqueue(1.5)
    background_worker()
    wait_for(lambda: result.refresh() or result.status == TaskResultStatus.FAILED)
    assert error_classes(result) == ["dbqueue_embedded.exceptions.JobTimeout"]
    assert not Execution.objects.exists()  # failed while the task still ran
    # The thread returns later (having seen the stop request); its result is
    # discarded and the job stays failed.
    wait_for(lambda: Execution.objects.filter(job_id=result.id).exists())
    wait_for(lambda: "was discarded" in caplog.text)
    job = job_of(result)
    assert job.status == TaskResultStatus.FAILED
    assert job.return_value is None


# -- cancellation --------------------------------------------------------------


def test_cancelling_a_queued_job_fails_it_before_it_runs(run_worker):
    result = tasks.record.enqueue()
    cancelled = default_task_backend.cancel(result.id)
    assert cancelled.status == TaskResultStatus.FAILED
    assert error_classes(cancelled) == ["dbqueue_embedded.exceptions.JobCancelled"]
    run_worker()
    assert not Execution.objects.exists()
    with pytest.raises(JobNotCancellable, match="already finished"):
        default_task_backend.cancel(result.id)
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.cancel(str(uuid.uuid4()))


def test_a_running_sync_task_sees_the_cancel_request(background_worker):
    result = tasks.wait_for_cancel.enqueue(60)
    background_worker(heartbeat_interval=0.05)
    wait_for(lambda: Execution.objects.filter(job_id=result.id).exists())
    assert default_task_backend.cancel(result.id).status == TaskResultStatus.RUNNING
    wait_for(lambda: finished(result))
    assert result.status == TaskResultStatus.FAILED
    assert error_classes(result) == ["dbqueue_embedded.exceptions.JobCancelled"]


def test_a_running_async_task_is_cancelled(background_worker):
    result = tasks.async_wait_for_cancel.enqueue(60)
    background_worker(heartbeat_interval=0.05)
    wait_for(lambda: job_of(result).status == TaskResultStatus.RUNNING)
    default_task_backend.cancel(result.id)
    wait_for(lambda: finished(result))
    assert result.status == TaskResultStatus.FAILED
    assert error_classes(result) == ["dbqueue_embedded.exceptions.JobCancelled"]


def test_a_cancel_request_outlives_the_attempt_it_was_made_for(run_worker):
    result = tasks.record.enqueue()
    job = claim_as("ghost")
    default_task_backend.cancel(result.id)
    store.finish_claims([released_outcome(job, "stopping")], using="default")
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert error_classes(result)[-1] == "dbqueue_embedded.exceptions.JobCancelled"
    assert not Execution.objects.exists()


# -- rolling deploys -------------------------------------------------------------


def test_a_job_of_an_unknown_task_is_released_for_a_process_that_knows_it(
    run_worker, tmp_path, monkeypatch
):
    (tmp_path / "new_release.py").write_text(
        "from django.tasks import task\n\n@task\ndef greet(name):\n"
        "    return f'hello {name}'\n"
    )
    [job] = insert_jobs_with_paths(["new_release.greet"], args=("web",))
    result_id = job.id
    run_worker()  # an old process: it cannot import the task
    job = Job.objects.get(id=result_id)
    assert job.status == TaskResultStatus.READY
    [error] = job.errors
    assert error["exception_class_path"] == "dbqueue_embedded.exceptions.UnknownTask"
    assert "Released for a process that can import it (1 of 10)" in error["traceback"]
    assert job.available_at > timezone.now()

    monkeypatch.syspath_prepend(str(tmp_path))  # a process of the new release
    wait_for(lambda: Job.objects.get(id=result_id).available_at <= timezone.now())
    run_worker()
    result = default_task_backend.get_result(str(result_id))
    assert (result.status, result.return_value) == (
        TaskResultStatus.SUCCESSFUL,
        "hello web",
    )


def test_an_unknown_task_fails_after_its_releases(run_worker):
    [job] = insert_jobs_with_paths(["tests.testapp.removed_module.task"])
    result_id = job.id
    run_worker(unknown_task_releases=1)
    Job.objects.filter(id=result_id).update(available_at=timezone.now())
    run_worker(unknown_task_releases=1)
    job = Job.objects.get(id=result_id)
    assert job.status == TaskResultStatus.FAILED
    assert len(job.errors) == 2
    assert (
        "No module named 'tests.testapp.removed_module'" in job.errors[-1]["traceback"]
    )


# -- recovery and fencing --------------------------------------------------------


def test_the_jobs_of_a_dead_process_are_recovered_and_run(background_worker):
    result = tasks.record.enqueue("once")
    claim_as("ghost")
    WorkerProcess.objects.filter(id="ghost").update(
        last_heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    runtime = background_worker(**FAST_SWEEP)
    wait_for(lambda: finished(result))
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.worker_ids == ["ghost", runtime.worker_id]
    assert error_classes(result) == [WORKER_LOST]
    assert "Worker ghost stopped heartbeating" in result.errors[0].traceback
    assert not WorkerProcess.objects.filter(id="ghost").exists()


def test_an_outcome_from_a_recovered_claim_is_rejected():
    result = tasks.add.enqueue(1, 2)
    lost = claim_as("ghost")
    register_process("ghost", heartbeat_age=timedelta(hours=1))
    [recovered] = sweep()
    assert recovered.status == TaskResultStatus.READY
    late = store.Outcome(
        job_id=lost.id,
        claim_token=lost.claim_token,
        status=TaskResultStatus.SUCCESSFUL,
        finished_at=timezone.now(),
        return_value_json="3",
        errors=[],
    )
    assert store.finish_claims([late], using="default") == set()
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert error_classes(result) == [WORKER_LOST]


def test_a_zombie_s_late_finish_is_discarded_and_logged(background_worker, caplog):
    caplog.set_level(logging.WARNING, logger="dbqueue_embedded")
    result = tasks.record_then_sleep.enqueue(1.5)
    # A runtime that falls silent (frozen, cut off) while its job runs: its
    # row says so, and its next heartbeat is a minute away.
    zombie = background_worker(heartbeat_interval=60, process_dead_after=180)
    wait_for(lambda: Execution.objects.filter(job_id=result.id).exists())
    look_silent(zombie)
    rescuer = background_worker(**FAST_SWEEP)
    wait_for(lambda: finished(result))
    wait_for(lambda: "was discarded" in caplog.text)
    result.refresh()
    assert result.worker_ids == [zombie.worker_id, rescuer.worker_id]
    assert result.return_value == {"attempt": 2, "worker_id": rescuer.worker_id}
    assert Execution.objects.filter(job_id=result.id).count() == 2


def test_a_process_presumed_dead_learns_it_from_its_heartbeat_and_registers_again(
    background_worker, caplog
):
    caplog.set_level(logging.ERROR, logger="dbqueue_embedded")
    slow = background_worker(heartbeat_interval=0.2, process_dead_after=1)
    background_worker(**FAST_SWEEP)
    # Until a sweep finds it silent before its next heartbeat does.
    wait_for(
        lambda: (
            look_silent(slow) or "was presumed dead by another process" in caplog.text
        )
    )
    assert slow.worker_id in caplog.text
    assert slow.is_running


def test_each_process_is_judged_by_its_own_patience(background_worker):
    patient = tasks.add.enqueue(1, 1)
    claim_as("patient")
    # Silent for 10 s, but it said it may be silent for a minute.
    register_process(
        "patient", dead_after=timedelta(seconds=60), heartbeat_age=timedelta(seconds=10)
    )
    register_process("gone", heartbeat_age=timedelta(hours=1))
    background_worker(**FAST_SWEEP)
    wait_for(lambda: not WorkerProcess.objects.filter(id="gone").exists())
    assert WorkerProcess.objects.filter(id="patient").exists()
    assert job_of(patient).claimed_by == "patient"


def test_a_live_slow_job_is_never_recovered(background_worker):
    result = tasks.record_then_sleep.enqueue(2.0)  # four times the patience
    background_worker(**FAST_SWEEP)
    background_worker(**FAST_SWEEP)
    wait_for(lambda: finished(result))
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.errors == []
    assert Execution.objects.filter(job_id=result.id).count() == 1


def test_a_job_that_keeps_killing_its_process_is_quarantined():
    result = tasks.add.enqueue(1, 2)
    for attempt in range(1, 4):
        claim_as(f"doomed-{attempt}")
        register_process(f"doomed-{attempt}", heartbeat_age=timedelta(hours=1))
        [recovered] = sweep(max_lost_attempts=3)
    assert recovered.status == TaskResultStatus.FAILED
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.finished_at is not None
    quarantined = "dbqueue_embedded.exceptions.JobQuarantined"
    assert error_classes(result) == [WORKER_LOST, WORKER_LOST, quarantined]
    assert "3 attempts of the job have now died" in result.errors[-1].traceback


def test_a_sigkilled_worker_s_jobs_run_again_within_the_default_time(
    background_worker,
):
    result = tasks.wait_for_cancel.enqueue(120)
    killed = WorkerSubprocess("--concurrency", "1")
    try:
        wait_for(lambda: Execution.objects.filter(job_id=result.id).exists(), 30)
        killed.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
    finally:
        killed.finish()
    runtime = background_worker()  # default heartbeats and patience
    wait_for(lambda: job_of(result).claimed_by == runtime.worker_id, timeout=40)
    recovery_time = time.monotonic() - killed_at
    assert recovery_time <= {"postgresql": 10, "sqlite": 30}[connection.vendor]
    wait_for(lambda: Execution.objects.filter(job_id=result.id).count() == 2)
    default_task_backend.cancel(result.id)  # rather than wait two minutes
    wait_for(lambda: finished(result))
    assert error_classes(result) == [
        WORKER_LOST,
        "dbqueue_embedded.exceptions.JobCancelled",
    ]
