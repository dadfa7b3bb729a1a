"""The runtime itself: lifecycle, registration, wake-ups, stopping, resilience."""

import asyncio
import logging
import threading

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError, connection
from django.tasks import TaskResultStatus

from dbqueue_embedded import store
from dbqueue_embedded.models import WorkerProcess
from dbqueue_embedded.runtime.supervisor import Runtime
from dbqueue_embedded.runtime.web_activity import WebActivity, web_requests
from dbqueue_embedded.runtime.worker import Worker
from dbqueue_embedded.store import processes
from tests.conftest import finished, register_process, requires_postgres, wait_for
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def status_of(result):
    result.refresh()
    return result.status


def registered(runtime):
    return WorkerProcess.objects.filter(id=runtime.worker_id).first()


def test_start_and_stop_are_idempotent():
    runtime = Runtime()
    runtime.stop()  # never started: nothing to do
    runtime.start()
    thread_count = threading.active_count()
    runtime.start()
    assert threading.active_count() == thread_count
    wait_for(lambda: registered(runtime))
    runtime.stop()
    runtime.stop()
    assert not runtime.is_running


def test_a_runtime_registers_its_process_and_deregisters_on_stop(background_worker):
    runtime = background_worker(concurrency=3, worker_queues="a,b*")
    row = wait_for(lambda: registered(runtime))
    assert row.mode == "standalone"
    assert row.concurrency == 3
    assert row.queues == ["a", "b*"]
    assert row.backend == "default"
    runtime.stop()
    assert registered(runtime) is None


def test_heartbeats_refresh_the_process_row(background_worker):
    runtime = background_worker(heartbeat_interval=0.05)
    first = wait_for(lambda: registered(runtime)).last_heartbeat_at
    wait_for(lambda: registered(runtime).last_heartbeat_at > first)


def test_an_enqueue_in_this_process_wakes_the_runtime_at_once(background_worker):
    # With a poll interval of a minute, only the in-process wake-up can run
    # the job within the wait below.
    runtime = background_worker(poll_interval=60)
    wait_for(lambda: registered(runtime))
    result = tasks.add.enqueue(2, 2)
    wait_for(lambda: finished(result), timeout=5)
    assert result.return_value == 4


def test_an_embedded_runtime_runs_jobs_while_its_server_is_never_idle(
    background_worker,
):
    # The runtime defers its bookkeeping to requests in flight, but only for
    # a moment: a request that never ends must not hold the queue up.
    runtime = background_worker(mode="embedded", poll_interval=60)
    wait_for(lambda: registered(runtime))
    web_requests.request_started()
    try:
        results = [tasks.add.enqueue(n, n) for n in range(5)]
        for result in results:
            wait_for(lambda result=result: finished(result), timeout=5)
    finally:
        web_requests.request_finished()
    assert [result.return_value for result in results] == [0, 2, 4, 6, 8]


def test_deferred_work_resumes_as_soon_as_the_last_request_finishes():
    activity = WebActivity()
    activity.request_started()
    activity.request_started()

    async def wait_for_quiet() -> None:
        loop = asyncio.get_running_loop()
        waiting = asyncio.create_task(activity.quiet(max_wait=60))
        await asyncio.sleep(0)  # let it start waiting
        await loop.run_in_executor(None, activity.request_finished)
        assert not waiting.done()
        await loop.run_in_executor(None, activity.request_finished)
        await asyncio.wait_for(waiting, timeout=5)

    asyncio.run(wait_for_quiet())
    finished_at = threading.Timer(0, activity.request_finished)
    activity.request_started()
    finished_at.start()
    activity.wait_until_quiet(max_wait=60)  # returns once the timer fires
    finished_at.join()


def test_a_wake_up_for_another_queue_does_not_concern_the_runtime(background_worker):
    runtime = background_worker(poll_interval=60, worker_queues="emails")
    wait_for(lambda: registered(runtime))
    other = tasks.add.using(queue_name="reports").enqueue(1, 1)
    mine = tasks.add.using(queue_name="emails").enqueue(1, 1)
    wait_for(lambda: finished(mine), timeout=5)
    assert not finished(other)


def test_a_graceful_stop_lets_running_jobs_finish(background_worker):
    runtime = background_worker(shutdown_timeout=10)
    result = tasks.sleep_for.enqueue(0.5)
    wait_for(lambda: status_of(result) == TaskResultStatus.RUNNING)
    runtime.stop()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL


@pytest.mark.parametrize("slow_task", [tasks.sleep_for, tasks.async_sleep_for])
def test_jobs_still_running_after_the_timeout_go_back_to_the_queue(
    background_worker, run_worker, slow_task
):
    runtime = background_worker(shutdown_timeout=0.1)
    result = slow_task.enqueue(1.5)
    wait_for(lambda: status_of(result) == TaskResultStatus.RUNNING)
    runtime.stop()

    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert result.worker_ids == [runtime.worker_id]
    [error] = result.errors
    assert error.exception_class_path == "dbqueue_embedded.exceptions.JobInterrupted"
    assert "after waiting 0.1 s" in error.traceback

    second = run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.worker_ids == [runtime.worker_id, second.worker_id]


def test_a_stop_can_release_running_jobs_at_once(background_worker):
    runtime = background_worker(shutdown_timeout=60)
    result = tasks.sleep_for.enqueue(1.5)
    wait_for(lambda: status_of(result) == TaskResultStatus.RUNNING)
    runtime.request_stop(immediately=True)
    assert runtime.wait(timeout=5)
    result.refresh()
    assert result.status == TaskResultStatus.READY


def test_claim_failures_are_logged_and_retried(monkeypatch, run_worker, caplog):
    calls = []
    claim_batch = store.claim_batch

    def failing_once(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise OperationalError("the database went away")
        return claim_batch(**kwargs)

    monkeypatch.setattr(store, "claim_batch", failing_once)
    result = tasks.add.enqueue(1, 1)
    run_worker()
    assert finished(result)
    assert "Claiming jobs failed; retrying" in caplog.text
    assert "the database went away" in caplog.text


def test_a_part_that_crashes_is_restarted_and_the_rest_keeps_working(
    monkeypatch, background_worker, caplog
):
    runs = []
    claim_loop = Worker.run

    async def crashing_once(self):
        runs.append(self)
        if len(runs) == 1:
            raise RuntimeError("claim loop bug")
        await claim_loop(self)

    monkeypatch.setattr(Worker, "run", crashing_once)
    caplog.set_level(logging.ERROR, logger="dbqueue_embedded.runtime")
    runtime = background_worker(heartbeat_interval=0.05)
    result = tasks.add.enqueue(1, 1)
    wait_for(lambda: finished(result))
    assert "part 'worker' crashed; restarting it" in caplog.text
    assert runtime.is_running
    # The heartbeat reports the restart for dbqueue_health.
    wait_for(
        lambda: (
            WorkerProcess.objects.get(id=runtime.worker_id).loops.get("worker")
            == {
                "state": "running",
                "restarts": 1,
                "last_error": "RuntimeError: claim loop bug",
            }
        )
    )


def test_a_failed_heartbeat_is_logged_and_the_next_comes_on_time(
    monkeypatch, background_worker, caplog
):
    beats = []
    record_heartbeat = processes.record_heartbeat

    def failing_twice(**kwargs):
        beats.append(kwargs)
        if len(beats) <= 2:
            raise RuntimeError("database blip")
        return record_heartbeat(**kwargs)

    monkeypatch.setattr(processes, "record_heartbeat", failing_twice)
    caplog.set_level(logging.ERROR, logger="dbqueue_embedded.runtime")
    runtime = background_worker(heartbeat_interval=0.05)
    wait_for(lambda: len(beats) >= 4)
    assert caplog.text.count("could not record its heartbeat") == 2
    assert runtime.loop_states()["heartbeat"]["restarts"] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "Option 'concurrency': must be a whole number"),
        ({"poll_interval": 0}, "Option 'poll_interval': must be more than zero"),
        ({"speed": 1}, "Unknown option 'speed'"),
    ],
)
def test_invalid_runtime_options_are_refused(options, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        Runtime(**options)


def test_a_runtime_warns_when_django_s_pool_is_too_small(monkeypatch, caplog):
    with monkeypatch.context() as patched:
        patched.setitem(connection.settings_dict, "OPTIONS", {"pool": True})
        runtime = Runtime(concurrency=6)
    runtime.start()
    try:
        wait_for(lambda: "holds 4 connections, but this process" in caplog.text)
        assert "may need 9 (" in caplog.text
    finally:
        runtime.stop()


@requires_postgres
def test_a_runtime_warns_when_the_queue_may_exceed_max_connections(
    background_worker, caplog
):
    register_process("busy-host-1", concurrency=500, connection_budget=503)
    background_worker()
    wait_for(lambda: "processes running the queue may open up to" in caplog.text)
    assert "more than the" in caplog.text
