"""Operating the queue: pause, resume, clear, size and latency; failed jobs;
retention; enqueueing on commit."""

import io
import json
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils import timezone

from dbqueue_embedded.exceptions import JobNotFailed
from dbqueue_embedded.models import Job
from dbqueue_embedded.queues import QueueInfo
from dbqueue_embedded.transactions import enqueue_on_commit
from tests.conftest import WorkerSubprocess, finished, wait_for
from tests.testapp.tasks import add, fail_value_error, noop, sleep_for

pytestmark = pytest.mark.django_db(transaction=True)


def command(name, *arguments):
    out = io.StringIO()
    call_command(name, *arguments, stdout=out)
    return out.getvalue()


# -- queue control ------------------------------------------------------------


def test_pausing_a_queue_stops_claims_in_every_process_within_one_poll():
    poll = 0.5
    emails = sleep_for.using(queue_name="emails")
    for _ in range(400):
        emails.enqueue(0.02)
    workers = [
        WorkerSubprocess("--poll-interval", str(poll), "--concurrency", "2")
        for _ in range(2)
    ]
    try:
        wait_for(lambda: Job.objects.filter(status="SUCCESSFUL").count() >= 20, 30)
        assert QueueInfo("emails").pause()
        paused_at = timezone.now()
        # Claims that began before the pause may still land; none after it.
        time.sleep(poll)
        ready = Job.objects.filter(queue_name="emails", status="READY").count()
        assert ready > 0
        emails_jobs = Job.objects.filter(queue_name="emails")
        assert not emails_jobs.filter(last_attempted_at__gt=paused_at).exists()
        other = noop.enqueue()  # other queues carry on
        wait_for(lambda: finished(other))
        time.sleep(2 * poll)  # two more polls of each process: still nothing
        assert Job.objects.filter(queue_name="emails", status="READY").count() == ready
        assert QueueInfo("emails").paused

        assert QueueInfo("emails").resume()
        wait_for(
            lambda: not Job.objects.filter(status__in=["READY", "RUNNING"]).exists(),
            60,
        )
    finally:
        for worker in workers:
            worker.kill()


def test_size_latency_and_clear(run_worker):
    assert QueueInfo("reports").size == 0
    assert QueueInfo("reports").latency == timedelta(0)
    reports = noop.using(queue_name="reports")
    first = reports.enqueue()
    reports.enqueue()
    reports.using(run_after=timezone.now() + timedelta(hours=1)).enqueue()
    Job.objects.filter(id=first.id).update(
        available_at=timezone.now() - timedelta(seconds=30)
    )
    info = QueueInfo("reports")
    stats = info.stats()
    assert (stats.ready, stats.scheduled, stats.running) == (2, 1, 0)
    assert timedelta(seconds=29) < info.latency < timedelta(seconds=60)
    assert [q.name for q in QueueInfo.all()] == ["reports"]

    assert info.clear() == 3
    assert info.size == 0
    assert not Job.objects.exists()


def test_a_paused_queue_accepts_jobs_and_runs_them_once_resumed(run_worker):
    QueueInfo("default").pause()
    assert not QueueInfo("default").pause()  # already paused
    result = add.enqueue(1, 2)
    other = add.using(queue_name="other").enqueue(3, 4)
    run_worker()  # exits when nothing it may claim is left
    assert finished(other)
    assert not finished(result)
    assert [q.name for q in QueueInfo.all()] == ["default"]

    assert QueueInfo("default").resume()
    assert not QueueInfo("default").resume()
    run_worker()
    assert finished(result)
    assert result.return_value == 3


def test_queue_names_are_checked():
    with pytest.raises(ValueError, match="non-empty string"):
        QueueInfo("")
    with pytest.raises(ValueError, match="longer than 100"):
        QueueInfo("q" * 101)


def test_queues_command():
    noop.using(queue_name="emails").enqueue()
    assert "Paused emails." in command("dbqueue_queues", "pause", "emails")
    listing = json.loads(command("dbqueue_queues", "--json"))
    assert listing == [
        {
            "name": "emails",
            "ready": 1,
            "scheduled": 0,
            "running": 0,
            "blocked": 0,
            "latency_seconds": listing[0]["latency_seconds"],
            "paused": True,
        }
    ]
    assert "PAUSED" in command("dbqueue_queues")
    assert "Resumed emails." in command("dbqueue_queues", "resume", "emails")
    with pytest.raises(CommandError, match="--yes"):
        command("dbqueue_queues", "clear", "emails")
    assert Job.objects.count() == 1
    assert "Deleted 1 job(s)" in command("dbqueue_queues", "clear", "emails", "--yes")
    with pytest.raises(CommandError, match="Name the queue"):
        command("dbqueue_queues", "pause")
    with pytest.raises(CommandError, match="no task backend 'nope'"):
        command("dbqueue_queues", "--backend", "nope")


# -- failed jobs --------------------------------------------------------------


def test_retry_runs_the_same_job_again_and_keeps_its_errors(run_worker):
    result = fail_value_error.enqueue("first")
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED

    retried = default_task_backend.retry(result.id)
    assert retried.id == result.id
    assert retried.status == TaskResultStatus.READY
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert len(result.errors) == 2
    assert result.attempts == 2


def test_retry_and_discard_refuse_jobs_that_did_not_fail(run_worker):
    result = noop.enqueue()
    with pytest.raises(JobNotFailed, match="is READY; only FAILED jobs"):
        default_task_backend.retry(result.id)
    with pytest.raises(JobNotFailed):
        default_task_backend.discard(result.id)
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.retry("00000000-0000-0000-0000-000000000000")
    assert Job.objects.get().status == "READY"


def test_discard_deletes_a_failed_job(run_worker):
    result = fail_value_error.enqueue()
    run_worker()
    default_task_backend.discard(result.id)
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result.id)


def test_failed_command(run_worker):
    failures = [fail_value_error.enqueue(str(n)) for n in range(3)]
    kept = noop.enqueue()
    run_worker()
    listing = command("dbqueue_failed")
    assert all(str(f.id) in listing for f in failures)
    assert str(kept.id) not in listing

    with pytest.raises(CommandError, match="or pass --all"):
        command("dbqueue_failed", "retry")
    with pytest.raises(CommandError, match="'nope' is not a job id"):
        command("dbqueue_failed", "retry", "nope")
    # One id that did not fail: nothing changes at all.
    with pytest.raises(CommandError, match="nothing was changed"):
        command("dbqueue_failed", "retry", str(failures[0].id), str(kept.id))
    assert Job.objects.filter(status="FAILED").count() == 3

    assert "Retried 1 failed job(s)." in command(
        "dbqueue_failed", "retry", str(failures[0].id)
    )
    assert "Discarded 2 failed job(s)." in command("dbqueue_failed", "discard", "--all")
    assert Job.objects.filter(status="FAILED").count() == 0
    assert Job.objects.count() == 2


# -- retention ----------------------------------------------------------------


def finish_long_ago(result, *, days):
    Job.objects.filter(id=result.id).update(
        finished_at=timezone.now() - timedelta(days=days)
    )


def test_the_runtime_prunes_finished_jobs_past_their_retention(background_worker):
    old_success, new_success = noop.enqueue(), noop.enqueue()
    old_failure, new_failure = fail_value_error.enqueue(), fail_value_error.enqueue()
    background_worker(prune_interval=0.1)
    wait_for(lambda: all(map(finished, (old_success, new_success))))
    wait_for(lambda: all(map(finished, (old_failure, new_failure))))
    finish_long_ago(old_success, days=2)  # kept 1 day
    finish_long_ago(new_failure, days=2)  # kept 7 days
    finish_long_ago(old_failure, days=8)
    wait_for(lambda: Job.objects.count() == 2)
    assert {str(id_) for id_ in Job.objects.values_list("id", flat=True)} == {
        new_success.id,
        new_failure.id,
    }


def test_prune_command_filters_and_dry_run(run_worker):
    results = [noop.enqueue(), add.enqueue(1, 1), fail_value_error.enqueue()]
    pending = noop.enqueue()
    run_worker()
    pending = noop.enqueue()
    for result in results:
        finish_long_ago(result, days=3)

    output = command("dbqueue_prune", "--older-than", "2d", "--dry-run")
    assert "Would delete 2 SUCCESSFUL job(s)" in output
    assert "Would delete 1 FAILED job(s)" in output
    assert Job.objects.count() == 5

    output = command(
        "dbqueue_prune", "--older-than", "2d", "--task", "tests.testapp.tasks.add"
    )
    assert "Deleted 1 SUCCESSFUL job(s)" in output
    # Without --older-than: the backend's retention (failed jobs: 7 days).
    output = command("dbqueue_prune", "--status", "failed")
    assert "Deleted 0 FAILED job(s)" in output
    output = command("dbqueue_prune")
    assert "Deleted 1 SUCCESSFUL job(s)" in output
    assert Job.objects.filter(status="READY").count() == 1
    with pytest.raises(CommandError, match="invalid duration value"):
        command("dbqueue_prune", "--older-than", "soon")
    del pending


# -- enqueue on commit ----------------------------------------------------------


def test_enqueue_on_commit_waits_for_the_commit():
    with transaction.atomic():
        enqueue_on_commit(add, 1, 2)
        assert not Job.objects.exists()
    assert Job.objects.get().args == [1, 2]

    def enqueue_then_roll_back():
        with transaction.atomic():
            enqueue_on_commit(add, 3, 4)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        enqueue_then_roll_back()
    assert Job.objects.count() == 1


def test_enqueue_on_commit_checks_arguments_at_once():
    with pytest.raises(TypeError), transaction.atomic():
        enqueue_on_commit(add, object(), 2)
    assert not Job.objects.exists()
