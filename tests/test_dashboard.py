"""The dashboard: who may see it, what it shows, and its actions.

The browser test (tests/test_dashboard_browser.py) drives the same page in
Chromium; these tests read its HTML.
"""

import re
from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dbqueue_embedded.models import Job, QueuePause
from dbqueue_embedded.queues import QueueInfo
from dbqueue_embedded.recurring import schedule_recurring_task
from tests.conftest import client_for, register_process
from tests.testapp.tasks import add, fail_value_error, noop

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = reverse("dbqueue_dashboard:index")
PANELS = reverse("dbqueue_dashboard:panels")


def act(client: Client, operation: str, **data: str):
    return client.post(reverse("dbqueue_dashboard:act", args=[operation]), data)


def test_anonymous_visitors_are_sent_to_log_in_and_the_panels_refuse_them():
    response = Client().get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    # The page's live refresh must not swap a login page into itself.
    assert Client().get(PANELS).status_code == 403
    assert act(Client(), "pause", queue="default").status_code == 403


def test_staff_may_look_and_other_users_may_not():
    assert client_for(staff=False).get(PAGE).status_code == 403
    assert client_for().get(PAGE).status_code == 200


def test_a_configured_permission_replaces_the_staff_rule(settings):
    settings.DBQUEUE_DASHBOARD_PERMISSION = "dbqueue_embedded.view_job"
    assert client_for().get(PAGE).status_code == 403
    assert client_for("view_job", staff=False).get(PAGE).status_code == 200


def test_the_page_shows_queues_runs_failures_schedules_and_processes(run_worker):
    fail_value_error.enqueue("Card <declined>")
    add.enqueue(1, 2)
    run_worker()
    add.using(queue_name="emails").enqueue(1, 2)
    noop.using(run_after=timezone.now() + timedelta(hours=1)).enqueue()
    running = Job.objects.get(id=noop.enqueue().id)
    register_process("web-1", hostname="web-host", pid=4321)
    Job.objects.filter(id=running.id).update(
        status=TaskResultStatus.RUNNING,
        claimed_by="web-1",
        last_attempted_at=timezone.now(),
        progress={"done": 3, "total": 10, "message": "chunk 3", "updated_at": ""},
    )
    schedule_recurring_task("cleanup", "tests.testapp.tasks.noop", "*/5 * * * *")
    QueueInfo("emails").pause()

    page = client_for(superuser=True).get(PAGE).content.decode()

    emails = re.search(r'<tr class="paused" data-queue="emails">.*?</tr>', page, re.S)
    assert emails
    assert "(paused)" in emails.group()
    assert ">Resume</button>" in emails.group()
    default = re.search(r'<tr class="" data-queue="default">.*?</tr>', page, re.S)
    # Ready 0 (the one left runs), scheduled 1, running 1.
    assert re.findall(r'<td class="num">(\d+)</td>', default.group())[:3] == [
        "0",
        "1",
        "1",
    ]
    # Two finished jobs this minute: one bar each, succeeded and failed.
    assert len(re.findall(r'<rect class="succeeded"', page)) == 1
    assert len(re.findall(r'<rect class="failed"', page)) == 1
    # The running job with its process, the failure with its traceback.
    assert "web-host:4321" in page
    assert '<progress max="10" value="3"></progress> 3/10 chunk 3' in page
    assert "<code>builtins.ValueError</code>" in page
    assert "ValueError: Card &lt;declined&gt;" in page
    # The schedule's next run, the process's heartbeat.
    assert "*/5 * * * *" in page
    next_run = re.search(
        r"cleanup \(dynamic\).*?<td>(\d{4}-\d\d-\d\d \d\d:\d\d:00)", page, re.S
    )
    assert next_run
    assert "s ago" in page


def test_action_buttons_follow_permissions(run_worker):
    fail_value_error.enqueue()
    run_worker()
    viewer = client_for()
    page = viewer.get(PAGE).content.decode()
    assert ">Retry</button>" not in page
    assert ">Discard</button>" not in page

    operator = client_for("change_job")
    page = operator.get(PAGE).content.decode()
    assert ">Retry</button>" in page
    assert ">Discard</button>" not in page


def test_retry_from_the_dashboard_and_refusals_change_nothing(run_worker):
    job = Job.objects.get(id=fail_value_error.enqueue().id)
    run_worker()
    viewer = client_for()
    assert act(viewer, "retry", job=str(job.id)).status_code == 403
    assert act(viewer, "pause", queue="default").status_code == 403
    job.refresh_from_db()
    assert job.status == TaskResultStatus.FAILED
    assert not QueueInfo("default").paused

    operator = client_for(superuser=True)
    assert act(operator, "explode", job=str(job.id)).status_code == 404
    assert act(operator, "retry", job="not-an-id").status_code == 404
    response = act(operator, "retry", job=str(job.id))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == TaskResultStatus.READY
    page = operator.get(response["Location"]).content.decode()
    assert "Retried 1." in page


def test_pause_and_resume_from_the_dashboard(settings):
    add.enqueue(1, 2)
    operator = client_for(superuser=True)
    assert act(operator, "pause", queue="default").status_code == 302
    assert QueueInfo("default").paused
    assert act(operator, "resume", queue="default").status_code == 302
    assert not QueueInfo("default").paused

    # A queue the backend does not have is refused, and nothing is paused.
    settings.TASKS = {
        "default": {**settings.TASKS["default"], "QUEUES": ["default", "emails"]}
    }
    for bad in ("emial", "", "q" * 300):
        response = act(operator, "pause", queue=bad)
        assert response.status_code == 400
    assert (
        "has no queue 'emial'" in act(operator, "pause", queue="emial").content.decode()
    )
    assert not QueuePause.objects.exists()


def test_an_unknown_backend_is_not_found():
    client = client_for(superuser=True)
    assert client.get(PAGE, {"backend": "nope"}).status_code == 404
