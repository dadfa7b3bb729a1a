"""Named multi-step jobs (settings.JOBS): steps, hooks, states and workspace,
as django-db-queue defines them, with its failure cases fixed."""

import os
import signal
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import NotSupportedError, transaction
from django.tasks import default_task_backend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.test import override_settings
from django.utils import timezone

from dbqueue_embedded.exceptions import CreationHookFailed, InvalidJob
from dbqueue_embedded.models import NamedJob
from dbqueue_embedded.named_jobs import create_job, get_queue_depths
from dbqueue_embedded.named_jobs.config import check_jobs
from dbqueue_embedded.runtime.supervisor import Runtime
from tests.conftest import WorkerSubprocess, wait_for
from tests.testapp.jobs import BLOCK_IN_STEP_TWO
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

STEPS = "tests.testapp.jobs"
FAST_SWEEP = {"heartbeat_interval": 0.05, "process_dead_after": 0.5}


def job_named(job):
    return NamedJob.objects.get(id=job.id)


def steps_run(job):
    return list(
        Execution.objects.filter(job_id=str(job.id))
        .order_by("id")
        .values_list("label", flat=True)
    )


def error_classes(job):
    return [error["exception_class_path"] for error in job_named(job).errors]


def test_each_step_is_one_claim_with_the_hooks_around_it(run_worker):
    job = create_job("three_steps", workspace={"start": 4})
    assert job.state == "NEW"
    assert job.next_task == f"{STEPS}.step_one"
    run_worker()
    job = job_named(job)
    assert job.state == NamedJob.STATES.COMPLETED
    assert job.next_task == ""
    assert job.workspace["trace"] == [
        "pre:step_one",
        "step_one",
        "post:READY",
        "pre:step_two",
        "step_two",
        "post:READY",
        "pre:step_three",
        "step_three",
        "post:COMPLETED",
    ]
    # Each step saw what the one before it stored.
    assert job.workspace["total"] == 50
    assert len(job.worker_ids) == 3  # one claim per step
    assert job.errors == []
    assert job.finished_at is not None


def test_between_steps_the_job_is_ready_at_its_next_step(background_worker):
    job = create_job("three_steps", workspace={"start": 4, "sleep": 1})
    # A second between two claims: long enough to see the job wait.
    background_worker(min_job_interval=1)
    between = wait_for(lambda: (found := job_named(job)).state == "READY" and found)
    assert between.next_task == f"{STEPS}.step_two"
    assert between.workspace["total"] == 5  # step one's change, saved
    wait_for(lambda: job_named(job).state == "PROCESSING")
    wait_for(lambda: job_named(job).state == "COMPLETED", timeout=20)
    assert steps_run(job) == ["step_one", "step_two", "step_three"]


def test_a_failing_step_fails_the_job_at_that_step(run_worker):
    job = create_job("three_steps", workspace={"fail_at": "step_two"})
    run_worker()
    job = job_named(job)
    assert job.state == "FAILED"
    assert job.next_task == f"{STEPS}.step_two"
    assert job.workspace["trace"][-4:] == [
        "pre:step_two",
        "step_two",
        "failure:ValueError",
        "post:FAILED",
    ]
    assert job.workspace["total"] == 1  # saved after step one, and after failing
    assert error_classes(job) == ["builtins.ValueError"]
    assert steps_run(job) == ["step_one", "step_two"]


def test_a_retried_failed_job_runs_again_from_the_step_that_failed(run_worker):
    job = create_job("three_steps", workspace={"fail_at": "step_two", "fail_once": 1})
    run_worker()
    assert job_named(job).state == "FAILED"
    call_command("dbqueue_failed", "retry", str(job.id), stdout=StringIO())
    run_worker()
    assert job_named(job).state == "COMPLETED"
    assert steps_run(job) == ["step_one", "step_two", "step_two", "step_three"]


def test_a_failing_pre_task_hook_fails_the_job_like_its_step(run_worker):
    job = create_job("three_steps", workspace={"fail_pre": True})
    run_worker()
    job = job_named(job)
    assert job.state == "FAILED"
    assert job.workspace["trace"] == ["pre:step_one", "failure:KeyError", "post:FAILED"]
    assert steps_run(job) == []
    assert error_classes(job) == ["builtins.KeyError"]


def test_a_failing_post_task_hook_is_logged_and_fails_nothing(run_worker, caplog):
    job = create_job("three_steps", workspace={"fail_post": True})
    run_worker()
    job = job_named(job)
    assert job.state == "COMPLETED"
    assert not any(entry.startswith("failure:") for entry in job.workspace["trace"])
    assert job.errors == []
    assert caplog.text.count("post-task hook of job") == 3


def test_a_failing_failure_hook_keeps_the_job_failed_with_both_errors(run_worker):
    broken = create_job(
        "three_steps", workspace={"fail_at": "step_one", "fail_failure_hook": True}
    )
    after = create_job("one_step")
    run_worker(concurrency=1)
    broken = job_named(broken)
    assert broken.state == "FAILED"
    assert broken.workspace["trace"][-2:] == ["failure:ValueError", "post:FAILED"]
    assert error_classes(broken) == ["builtins.ValueError", "builtins.RuntimeError"]
    assert "Raised by the failure hook" in broken.errors[1]["traceback"]
    assert job_named(after).state == "COMPLETED"  # the runtime lived on


def test_a_workspace_that_is_not_json_fails_the_step_and_keeps_the_last_one(
    run_worker,
):
    job = create_job("three_steps", workspace={"break_workspace": True})
    run_worker()
    job = job_named(job)
    assert job.state == "FAILED"
    assert job.next_task == f"{STEPS}.step_three"
    assert error_classes(job) == ["builtins.TypeError"]
    assert job.workspace["trace"][-1] == "post:READY"  # as stored after step two


def test_the_creation_hook_runs_in_the_creating_process_before_the_insert():
    job = create_job("three_steps")
    assert job_named(job).workspace == {"created_by_pid": os.getpid()}


def test_a_failing_creation_hook_raises_and_creates_nothing():
    with pytest.raises(CreationHookFailed, match="creation hook failed"):
        create_job("three_steps", workspace={"fail_create": True})
    with pytest.raises(CreationHookFailed):
        NamedJob.objects.bulk_create(
            [
                NamedJob(name="three_steps"),
                NamedJob(name="three_steps", workspace={"fail_create": True}),
            ]
        )
    assert not NamedJob.objects.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "nope"}, "There is no job named 'nope'"),
        ({"workspace": ["a"]}, "workspace must be a dict"),
        ({"workspace": {"when": object()}}, "workspace is not JSON"),
        ({"priority": 101}, "priority must be a whole number"),
        ({"run_after": timezone.now().replace(tzinfo=None)}, "aware datetime"),
        ({"queue_name": "q" * 101}, "at most 100 characters"),
    ],
)
def test_a_bad_job_raises_a_clear_error_and_creates_nothing(fields, message):
    with pytest.raises(InvalidJob, match=message):
        NamedJob.objects.create(**{"name": "one_step", **fields})
    assert not NamedJob.objects.exists()


def test_bulk_creation_sets_the_first_step_and_runs_creation_hooks(run_worker):
    jobs = NamedJob.objects.bulk_create(
        [NamedJob(name="three_steps", workspace={"start": n}) for n in range(3)]
    )
    assert {job.next_task for job in NamedJob.objects.all()} == {f"{STEPS}.step_one"}
    assert all("created_by_pid" in job.workspace for job in NamedJob.objects.all())
    run_worker()
    assert sorted(job_named(job).workspace["total"] for job in jobs) == [10, 20, 30]


def test_creation_joins_the_callers_transaction():
    with transaction.atomic():
        create_job("one_step")
        transaction.set_rollback(True)
    assert not NamedJob.objects.exists()


def test_the_workspace_is_queryable_like_any_json_field():
    mine = create_job("one_step", workspace={"user_id": 7})
    create_job("one_step", workspace={"user_id": 8})
    assert list(NamedJob.objects.filter(workspace__user_id=7)) == [mine]


def test_priority_queue_and_run_after_work_as_for_tasks(run_worker):
    later = create_job("one_step", run_after=timezone.now() + timedelta(hours=1))
    low = create_job("one_step", queue_name="imports", priority=-5)
    high = create_job("one_step", queue_name="imports", priority=5)
    other = create_job("one_step", queue_name="other")
    assert get_queue_depths() == {"default": 1, "imports": 2, "other": 1}
    assert get_queue_depths(exclude_future_jobs=True) == {"imports": 2, "other": 1}
    assert NamedJob.get_queue_depths() == get_queue_depths()
    run_worker(worker_queues="imports", concurrency=1)
    assert job_named(high).started_at < job_named(low).started_at
    assert job_named(other).state == "NEW"
    assert job_named(later).state == "NEW"
    assert list(NamedJob.objects.filter(state="NEW")) == [later, other]


def test_a_created_job_is_changed_only_by_the_queue():
    job = create_job("one_step")
    job.workspace["x"] = 1
    with pytest.raises(NotSupportedError, match="only the queue changes"):
        job.save()
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(str(job.id))
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.retry(str(job.id))


def test_a_job_this_process_does_not_know_is_handed_back_then_failed(run_worker):
    job = create_job("one_step")
    with override_settings(JOBS={"three_steps": {"tasks": [f"{STEPS}.step_one"]}}):
        run_worker(unknown_task_releases=0)
    assert job_named(job).state == "FAILED"
    assert error_classes(job) == ["dbqueue_embedded.exceptions.UnknownTask"]
    assert "no job named 'one_step'" in job_named(job).errors[0]["traceback"]


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ([], "JOBS must be a dict"),
        ({"a": [f"{STEPS}.step_one"]}, "is a list; write {'tasks': [...]}"),
        ({"a": {}}, "['tasks'] must be a non-empty list"),
        ({"a": {"tasks": [f"{STEPS}.step_one"], "retries": 3}}, "unknown key(s)"),
        ({"a": {"tasks": ["tests.testapp.jobs.nope"]}}, "could not be imported"),
        ({"a": {"tasks": ["tests.testapp.jobs.BLOCK_IN_STEP_TWO"]}}, "not a function"),
        ({"a": {"tasks": [f"{STEPS}.step_one"] * 2}}, "names a step twice"),
        (
            {"a": {"tasks": [f"{STEPS}.step_one"], "failure_hook": "nope"}},
            "must be a dotted path",
        ),
    ],
)
def test_malformed_jobs_are_check_errors_and_stop_a_runtime(jobs, message):
    with override_settings(JOBS=jobs):
        errors = check_jobs()
        assert [error.id for error in errors] == ["dbqueue_embedded.E008"]
        assert message in errors[0].msg
        with pytest.raises(ImproperlyConfigured, match=r"settings\.JOBS"):
            Runtime("default")


def test_a_sigkill_during_a_step_loses_only_that_step(background_worker):
    job = create_job("three_steps")
    killed = WorkerSubprocess(env_options=FAST_SWEEP, **{BLOCK_IN_STEP_TWO: "1"})
    try:
        wait_for(lambda: "step_two" in steps_run(job), timeout=30)
        assert job_named(job).state == "PROCESSING"
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.finish()
    background_worker(**FAST_SWEEP)
    wait_for(lambda: job_named(job).state == "COMPLETED", timeout=30)
    # Resumed at the step it was in, with what step one stored.
    assert steps_run(job) == ["step_one", "step_two", "step_two", "step_three"]
    job = job_named(job)
    assert job.workspace["total"] == 10
    assert error_classes(job) == ["dbqueue_embedded.exceptions.WorkerLost"]
    assert job.workspace["created_by_pid"] == os.getpid()
    assert Execution.objects.get(label="step_one").pid != os.getpid()


def test_a_stopping_process_shows_its_job_stopping_then_finishes_the_step(
    run_worker,
):
    job = create_job("three_steps", workspace={"sleep": 2})
    worker = WorkerSubprocess()
    try:
        wait_for(lambda: "step_two" in steps_run(job), timeout=30)
        worker.send_signal(signal.SIGTERM)
        wait_for(lambda: job_named(job).state == "STOPPING")
    finally:
        output = worker.finish()
    assert worker.returncode == 0, output
    job = job_named(job)
    assert job.state == "READY"  # not stuck: step two finished, three is next
    assert job.next_task == f"{STEPS}.step_three"
    run_worker()
    assert job_named(job).state == "COMPLETED"
    assert steps_run(job) == ["step_one", "step_two", "step_three"]


def test_a_job_stopping_when_its_process_is_killed_is_resumed(background_worker):
    job = create_job("three_steps")
    killed = WorkerSubprocess(env_options=FAST_SWEEP, **{BLOCK_IN_STEP_TWO: "1"})
    try:
        wait_for(lambda: "step_two" in steps_run(job), timeout=30)
        killed.send_signal(signal.SIGTERM)
        wait_for(lambda: job_named(job).state == "STOPPING")
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.finish()
    background_worker(**FAST_SWEEP)
    wait_for(lambda: job_named(job).state == "COMPLETED", timeout=30)
    assert steps_run(job) == ["step_one", "step_two", "step_two", "step_three"]


def test_job_ids_are_uuids_and_state_survives_refresh():
    job = create_job("one_step")
    assert isinstance(job.id, uuid.UUID)
    job.refresh_from_db()
    assert job.state == "NEW"
