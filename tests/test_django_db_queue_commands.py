"""django-db-queue's commands (dbqueue_embedded.contrib.django_db_queue)."""

import itertools
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from dbqueue_embedded.models import Job, NamedJob
from dbqueue_embedded.named_jobs import create_job
from tests.conftest import WorkerSubprocess

pytestmark = pytest.mark.django_db(transaction=True)


def run(*arguments, **options):
    out = StringIO()
    call_command(*arguments, stdout=out, **options)
    return out.getvalue()


def test_create_job_creates_a_job_with_its_queue_and_workspace():
    output = run(
        "create_job",
        "three_steps",
        "--queue_name",
        "imports",
        "--workspace",
        '{"user_id": 3}',
        "--priority",
        "2",
    )
    job = NamedJob.objects.get()
    assert f"Created job three_steps {job.id} on queue imports" in output
    assert (job.queue_name, job.priority, job.state) == ("imports", 2, "NEW")
    assert job.workspace["user_id"] == 3
    assert "created_by_pid" in job.workspace  # the creation hook ran


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["three_steps", "--workspace", "{user_id: 3}"],
            "--workspace is not valid JSON",
        ),
        (["three_steps", "--workspace", "[1, 2]"], "workspace must be a dict"),
        (["unknown"], "There is no job named 'unknown'"),
        (["three_steps", "--workspace", '{"fail_create": true}'], "creation hook"),
        (["three_steps", "--backend", "nope"], "no task backend 'nope'"),
    ],
)
def test_create_job_refuses_bad_input_and_creates_nothing(arguments, message):
    with pytest.raises(CommandError, match=message):
        run("create_job", *arguments)
    assert not Job.objects.exists()


def test_queue_depth_prints_the_queues_asked_for_in_order():
    create_job("one_step")
    create_job("one_step")
    create_job("one_step", queue_name="imports")
    create_job(
        "one_step", queue_name="imports", run_after=timezone.now() + timedelta(hours=1)
    )
    assert run("queue_depth") == "event=queue_depths default=2\n"
    assert run("queue_depth", "imports", "default", "nope") == (
        "event=queue_depths imports=2 default=2 nope=0\n"
    )
    assert run("queue_depth", "imports", "--exclude_future_jobs") == (
        "event=queue_depths imports=1\n"
    )


def test_delete_old_jobs_deletes_only_jobs_finished_long_enough_ago(run_worker):
    old, recent, failed = (create_job("one_step") for _ in range(3))
    run_worker()
    Job.objects.filter(id__in=[old.id, failed.id]).update(
        finished_at=timezone.now() - timedelta(hours=30)
    )
    Job.objects.filter(id=failed.id).update(status="FAILED")
    waiting = create_job("one_step")
    assert run("delete_old_jobs") == "Deleted 2 old job(s).\n"
    assert set(Job.objects.values_list("id", flat=True)) == {recent.id, waiting.id}
    assert run("delete_old_jobs", "--hours", "0") == "Deleted 1 old job(s).\n"
    assert list(Job.objects.values_list("id", flat=True)) == [waiting.id]
    with pytest.raises(CommandError, match="--hours must be zero or more"):
        run("delete_old_jobs", "--hours", "-1")


def test_worker_runs_one_queue_one_job_at_a_time_at_the_rate_limit():
    jobs = [create_job("one_step", queue_name="imports") for _ in range(3)]
    elsewhere = create_job("one_step")
    worker = WorkerSubprocess(
        "imports", "--rate_limit", "0.5", "--burst", command="worker"
    )
    output = worker.finish()
    assert worker.returncode == 0, output
    claimed = sorted(NamedJob.objects.get(id=job.id).last_attempted_at for job in jobs)
    assert all(NamedJob.objects.get(id=job.id).state == "COMPLETED" for job in jobs)
    # The worker spaces its claims 0.5 s apart; the database stamps each claim
    # a few milliseconds into its statement, which may shorten a gap a little.
    gaps = [b - a for a, b in itertools.pairwise(claimed)]
    assert all(gap >= timedelta(seconds=0.45) for gap in gaps), gaps
    assert NamedJob.objects.get(id=elsewhere.id).state == "NEW"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["imports", "--queue", "other"], "queue_name or --queue, not both"),
        (["--rate_limit", "-1"], "must be zero or more seconds"),
    ],
)
def test_worker_refuses_bad_arguments(arguments, message):
    worker = WorkerSubprocess(*arguments, command="worker")
    output = worker.finish()
    assert worker.returncode != 0
    assert message in output
