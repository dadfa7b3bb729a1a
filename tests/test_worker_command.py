"""``manage.py dbqueue_worker`` as a real process: signals, options, many workers."""

import signal
import subprocess
import sys
from collections import Counter

import pytest
from django.tasks import TaskResultStatus, default_task_backend

from dbqueue_embedded.models import Job, WorkerProcess
from tests.conftest import (
    ROOT,
    TEST_DATABASE,
    WorkerSubprocess,
    subprocess_env,
    wait_for,
)
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def status_of(result):
    result.refresh()
    return result.status


def test_burst_runs_what_is_ready_and_exits_cleanly():
    results = [tasks.add.enqueue(index, index) for index in range(10)]
    worker = WorkerSubprocess("--burst")
    output = worker.finish()
    assert worker.returncode == 0, output
    assert [status_of(result) for result in results] == [
        TaskResultStatus.SUCCESSFUL
    ] * 10
    assert "started: mode=standalone backend=default" in output
    assert not WorkerProcess.objects.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_claiming_and_lets_the_running_job_finish(signum):
    running = tasks.sleep_for.enqueue(1.0)
    waiting = tasks.add.using(priority=-1).enqueue(1, 1)
    worker = WorkerSubprocess("--concurrency", "1")
    wait_for(lambda: status_of(running) == TaskResultStatus.RUNNING)
    worker.send_signal(signum)
    output = worker.finish()

    assert worker.returncode == 0, output
    assert f"Received {signum.name}: stopping." in output
    assert status_of(running) == TaskResultStatus.SUCCESSFUL
    assert status_of(waiting) == TaskResultStatus.READY  # never claimed
    assert not WorkerProcess.objects.exists()


def test_a_job_outliving_the_shutdown_timeout_is_released_not_failed():
    result = tasks.sleep_for.enqueue(30)
    worker = WorkerSubprocess("--shutdown-timeout", "0.2")
    wait_for(lambda: status_of(result) == TaskResultStatus.RUNNING)
    worker.send_signal(signal.SIGTERM)
    output = worker.finish(timeout=10)

    assert worker.returncode == 0, output
    assert status_of(result) == TaskResultStatus.READY
    assert "released to the queue" in output
    assert result.errors[0].exception_class_path.endswith("JobInterrupted")


def test_a_second_signal_releases_running_jobs_at_once():
    result = tasks.sleep_for.enqueue(30)
    worker = WorkerSubprocess("--shutdown-timeout", "60")
    wait_for(lambda: status_of(result) == TaskResultStatus.RUNNING)
    worker.send_signal(signal.SIGTERM)
    wait_for(lambda: "Received SIGTERM: stopping." in worker.output())
    worker.send_signal(signal.SIGTERM)
    output = worker.finish(timeout=10)

    assert worker.returncode == 0, output
    assert "releasing running jobs now" in output
    assert status_of(result) == TaskResultStatus.READY


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--concurrency", "0"], "Option 'concurrency': must be a whole number"),
        (["--concurrency", "many"], "invalid literal for int()"),
        (["--poll-interval", "0"], "Option 'poll_interval': must be more than zero"),
        (
            ["--shutdown-timeout", "-1"],
            "Option 'shutdown_timeout': must be zero or more",
        ),
        (["--queue", "emails*x"], "'*' may only end a selector"),
        (["--backend", "missing"], "The connection 'missing' doesn't exist."),
    ],
)
def test_bad_arguments_exit_with_a_clear_error(arguments, message):
    process = subprocess.run(
        [sys.executable, "-m", "django", "dbqueue_worker", "--burst", *arguments],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode != 0
    assert message in process.stderr


def test_queue_options_select_and_order_queues():
    tasks.record.using(queue_name="low").enqueue("low")
    tasks.record.using(queue_name="high").enqueue("high")
    tasks.record.using(queue_name="ignored").enqueue("ignored")
    worker = WorkerSubprocess("--burst", "-c", "1", "-q", "high", "--queue", "low")
    output = worker.finish()
    assert worker.returncode == 0, output
    assert list(Execution.objects.order_by("id").values_list("label", flat=True)) == [
        "high",
        "low",
    ]


def test_every_job_runs_exactly_once_across_worker_processes():
    processes = 4 if TEST_DATABASE == "postgres" else 2
    jobs = 2000
    results = default_task_backend.bulk_enqueue(
        [(tasks.record, (str(index),), {}) for index in range(jobs)]
    )
    workers = [
        WorkerSubprocess("--burst", "--concurrency", "4") for _ in range(processes)
    ]
    for worker in workers:
        output = worker.finish(timeout=120)
        assert worker.returncode == 0, output

    runs = Counter(Execution.objects.values_list("job_id", flat=True))
    assert len(runs) == jobs
    assert set(runs.values()) == {1}
    assert set(runs) == {result.id for result in results}
    rows = Job.objects.values_list("status", "worker_ids")
    assert {status for status, _ in rows} == {TaskResultStatus.SUCCESSFUL}
    assert {len(worker_ids) for _, worker_ids in rows} == {1}
    # Every process took part.
    assert len({worker_ids[0] for _, worker_ids in rows}) == processes
