"""The Django admin: listings, readable errors, and permission-checked actions."""

from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dbqueue_embedded.models import ConcurrencyLease, Job, QueuePause, RecurringTask
from dbqueue_embedded.named_jobs import create_job
from dbqueue_embedded.queues import QueueInfo
from dbqueue_embedded.recurring import schedule_recurring_task
from tests.conftest import client_for, register_process
from tests.testapp.tasks import add, charge_account, fail_value_error, noop

pytestmark = pytest.mark.django_db(transaction=True)

JOBS = reverse("admin:dbqueue_embedded_job_changelist")


def failed_job(run_worker, message: str = "It broke") -> Job:
    result = fail_value_error.enqueue(message)
    run_worker()
    job = Job.objects.get(id=result.id)
    assert job.status == TaskResultStatus.FAILED
    return job


def act(client: Client, action: str, *jobs: Job, url: str = JOBS):
    return client.post(
        url,
        {"action": action, "_selected_action": [str(job.id) for job in jobs]},
        follow=True,
    )


def test_the_job_list_filters_by_status_queue_and_task_and_finds_ids(run_worker):
    failed = failed_job(run_worker)
    waiting = Job.objects.get(id=add.using(queue_name="emails").enqueue(1, 2).id)
    client = client_for(superuser=True)

    page = client.get(JOBS, {"status": "FAILED"}).content.decode()
    assert str(failed.id)[:8] in page
    assert str(waiting.id)[:8] not in page

    page = client.get(JOBS, {"queue_name": "emails"}).content.decode()
    assert str(waiting.id)[:8] in page
    assert str(failed.id)[:8] not in page

    page = client.get(JOBS, {"task_path": waiting.task_path}).content.decode()
    assert str(waiting.id)[:8] in page
    assert str(failed.id)[:8] not in page

    page = client.get(JOBS, {"q": str(failed.id)}).content.decode()
    assert str(failed.id)[:8] in page
    assert str(waiting.id)[:8] not in page
    page = client.get(JOBS, {"q": "fail_value"}).content.decode()
    assert str(failed.id)[:8] in page
    assert str(waiting.id)[:8] not in page


def test_a_failed_job_shows_its_error_and_traceback_readably(run_worker):
    job = failed_job(run_worker, message="Card <declined>")
    client = client_for(superuser=True)
    page = client.get(
        reverse("admin:dbqueue_embedded_job_change", args=[job.id])
    ).content.decode()
    assert "<code>builtins.ValueError</code>" in page
    # The traceback, escaped, in a <pre> that keeps its lines.
    assert 'class="dbq-tb"' in page
    assert "Traceback (most recent call last):" in page
    assert "ValueError: Card &lt;declined&gt;" in page
    # Nothing to edit: the page has no save button.
    assert 'name="_save"' not in page


def test_retry_and_discard_actions_change_failed_jobs(run_worker):
    retried, discarded = failed_job(run_worker), failed_job(run_worker)
    client = client_for(superuser=True)

    page = act(client, "retry", retried).content.decode()
    assert "Retried 1." in page
    retried.refresh_from_db()
    assert retried.status == TaskResultStatus.READY

    page = act(client, "discard", discarded, retried).content.decode()
    # Only FAILED jobs are discarded; the retried one waits again.
    assert "Discarded 1. 1 left alone" in page
    assert not Job.objects.filter(id=discarded.id).exists()
    assert Job.objects.filter(id=retried.id).exists()


def test_cancel_and_run_now_actions():
    waiting = Job.objects.get(id=noop.enqueue().id)
    later = Job.objects.get(
        id=noop.using(run_after=timezone.now() + timedelta(hours=1)).enqueue().id
    )
    client = client_for(superuser=True)

    act(client, "run_now", later)
    later.refresh_from_db()
    assert later.available_at <= timezone.now()
    assert later.status == TaskResultStatus.READY

    act(client, "cancel", waiting)
    waiting.refresh_from_db()
    assert waiting.status == TaskResultStatus.FAILED
    assert waiting.errors[-1]["exception_class_path"].endswith("JobCancelled")


def test_pause_and_resume_the_queues_of_selected_jobs():
    job = Job.objects.get(id=add.using(queue_name="emails").enqueue(1, 2).id)
    client = client_for(superuser=True)
    assert (
        "Paused 1 queue(s): emails."
        in act(client, "pause_queues", job).content.decode()
    )
    assert QueueInfo("emails").paused
    act(client, "resume_queues", job)
    assert not QueueInfo("emails").paused


def test_actions_need_their_permission(run_worker):
    job = failed_job(run_worker)
    viewer = client_for("view_job")
    # A viewer sees the list but is offered no action, and a forged POST of
    # one changes nothing.
    page = viewer.get(JOBS).content.decode()
    assert str(job.id)[:8] in page
    assert 'value="retry"' not in page
    act(viewer, "retry", job)
    act(viewer, "discard", job)
    job.refresh_from_db()
    assert job.status == TaskResultStatus.FAILED

    # change_job allows retry, not discard.
    operator = client_for("view_job", "change_job")
    page = operator.get(JOBS).content.decode()
    assert 'value="retry"' in page
    assert 'value="discard"' not in page
    act(operator, "discard", job)
    assert Job.objects.filter(id=job.id).exists()
    act(operator, "retry", job)
    job.refresh_from_db()
    assert job.status == TaskResultStatus.READY

    # Nobody deletes job rows behind the store's back.
    superuser = client_for(superuser=True)
    assert 'value="delete_selected"' not in superuser.get(JOBS).content.decode()


def test_anonymous_users_are_sent_to_log_in():
    response = Client().get(JOBS)
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_adding_a_queue_pause_pauses_the_queue_and_deleting_it_resumes():
    client = client_for(superuser=True)
    add_url = reverse("admin:dbqueue_embedded_queuepause_add")
    client.post(add_url, {"backend": "default", "queue_name": "emails"})
    assert QueueInfo("emails").paused
    # Pausing twice is refused with a message, and changes nothing.
    page = client.post(add_url, {"backend": "default", "queue_name": "emails"})
    assert page.status_code == 200
    assert "Queue &#x27;emails&#x27; is paused already." in page.content.decode()
    assert QueuePause.objects.count() == 1

    pause = QueuePause.objects.get()
    client.post(
        reverse("admin:dbqueue_embedded_queuepause_delete", args=[pause.pk]),
        {"post": "yes"},
    )
    assert not QueueInfo("emails").paused


def test_a_queue_pause_names_a_queue_of_the_backend(settings):
    settings.TASKS = {
        "default": {**settings.TASKS["default"], "QUEUES": ["default", "emails"]}
    }
    client = client_for(superuser=True)
    page = client.post(
        reverse("admin:dbqueue_embedded_queuepause_add"),
        {"backend": "default", "queue_name": "emial"},
    ).content.decode()
    assert "Backend &#x27;default&#x27; has no queue &#x27;emial&#x27;" in page
    assert not QueuePause.objects.exists()
    # Pausing needs its permission.
    viewer = client_for("view_queuepause")
    response = viewer.post(
        reverse("admin:dbqueue_embedded_queuepause_add"),
        {"backend": "default", "queue_name": "emails"},
    )
    assert response.status_code == 403
    assert not QueuePause.objects.exists()


def test_processes_recurring_tasks_and_leases_are_listed():
    register_process("web-1", hostname="web-host", pid=4321)
    schedule_recurring_task("cleanup", "tests.testapp.tasks.noop", "*/5 * * * *")
    charge_account.enqueue(7)
    client = client_for(superuser=True)

    page = client.get(
        reverse("admin:dbqueue_embedded_workerprocess_changelist")
    ).content.decode()
    assert "web-host" in page
    assert "4321" in page
    page = client.get(
        reverse("admin:dbqueue_embedded_recurringtask_changelist")
    ).content.decode()
    assert "*/5 * * * *" in page
    page = client.get(
        reverse("admin:dbqueue_embedded_concurrencylease_changelist")
    ).content.decode()
    assert "account:7" in page
    assert ConcurrencyLease.objects.count() == 1
    named = create_job("three_steps", workspace={"rows": 3})
    page = client.get(
        reverse("admin:dbqueue_embedded_namedjob_changelist")
    ).content.decode()
    assert str(named.id)[:8] in page
    assert '<td class="field-state">NEW</td>' in page


def test_deleting_a_recurring_task_in_the_admin_unschedules_it():
    schedule_recurring_task("cleanup", "tests.testapp.tasks.noop", "*/5 * * * *")
    task = RecurringTask.objects.get()
    client = client_for(superuser=True)
    client.post(
        reverse("admin:dbqueue_embedded_recurringtask_delete", args=[task.pk]),
        {"post": "yes"},
    )
    assert not RecurringTask.objects.exists()
