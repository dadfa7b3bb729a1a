"""The Prometheus endpoint: off by default, guarded, and well-formed."""

import pytest
from django.contrib.auth.models import Permission, User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from dbqueue_embedded.metrics.counters import job_counters
from dbqueue_embedded.models import WorkerProcess
from dbqueue_embedded.queues import QueueInfo
from tests.conftest import register_process, wait_for
from tests.testapp.tasks import add, fail_value_error, noop

pytestmark = pytest.mark.django_db(transaction=True)

URL = reverse("dbqueue_dashboard:metrics")
TOKEN = "a-long-enough-metrics-token"


def scrape(client: Client | None = None) -> dict:
    """The families by name, each a dict of samples: labels -> value."""
    response = (client or Client()).get(
        URL, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {}
    for family in text_string_to_metric_families(response.content.decode()):
        families[family.name] = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for sample in family.samples
        }
    return families


def value(family: dict, name: str, **labels: str) -> float | None:
    wanted = set(labels.items())
    found = [v for (n, key), v in family.items() if n == name and wanted <= set(key)]
    return sum(found) if found else None


def test_metrics_are_off_unless_configured():
    assert Client().get(URL).status_code == 404


def test_a_token_or_a_permission_is_needed(settings):
    settings.DBQUEUE_METRICS = {
        "token": TOKEN,
        "permission": "dbqueue_embedded.view_job",
    }
    anonymous = Client().get(URL)
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    wrong = Client().get(URL, headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401
    assert (
        Client().get(URL, headers={"Authorization": f"Bearer {TOKEN}"}).status_code
        == 200
    )

    user = User.objects.create_user("ops", password="x")
    client = Client()
    client.force_login(user)
    assert client.get(URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(User.objects.get(id=user.id))
    assert client.get(URL).status_code == 200


@pytest.mark.parametrize(
    "config",
    [{"token": "short"}, {}, {"tokn": TOKEN}, ["token"], {"token": 12345678901234567}],
)
def test_a_bad_metrics_setting_is_a_clear_error(settings, config):
    settings.DBQUEUE_METRICS = config
    with pytest.raises(ImproperlyConfigured, match="DBQUEUE_METRICS"):
        Client().get(URL)


def test_queues_and_processes_are_reported(settings):
    settings.DBQUEUE_METRICS = {"token": TOKEN}
    add.using(queue_name="emails").enqueue(1, 2)
    add.using(queue_name="emails").enqueue(3, 4)
    QueueInfo("emails").pause()
    register_process("web-1", hostname='host "one"')
    WorkerProcess.objects.filter(id="web-1").update(loops={"claim": {"restarts": 2}})

    families = scrape()

    queue_jobs = families["dbqueue_queue_jobs"]
    assert value(queue_jobs, "dbqueue_queue_jobs", queue="emails", state="ready") == 2
    assert value(queue_jobs, "dbqueue_queue_jobs", queue="emails", state="running") == 0
    paused = families["dbqueue_queue_paused"]
    assert value(paused, "dbqueue_queue_paused", queue="emails") == 1
    latency = families["dbqueue_queue_latency_seconds"]
    assert value(latency, "dbqueue_queue_latency_seconds", queue="emails") >= 0
    # Label values are escaped: the quotes in the hostname survive parsing.
    up = families["dbqueue_process_up"]
    assert value(up, "dbqueue_process_up", process="web-1", hostname='host "one"') == 1
    restarts = families["dbqueue_process_loop_restarts"]
    assert value(restarts, "dbqueue_process_loop_restarts_total", loop="claim") == 2


def counted(kind: str, task: str, status: str | None = None) -> int:
    """What this process counted so far (earlier tests ran jobs too)."""
    return sum(
        row[-1] if kind == "enqueued" else row[4]
        for row in job_counters.snapshot("default")[kind]
        if row[2] == task and (status is None or row[3] == status)
    )


def test_each_process_reports_what_it_enqueued_and_ran(settings, background_worker):
    settings.DBQUEUE_METRICS = {"token": TOKEN}
    noop_path, fail_path = noop.module_path, fail_value_error.module_path
    enqueued = counted("enqueued", noop_path) + 3
    succeeded = counted("finished", noop_path, "SUCCESSFUL") + 3
    failed = counted("finished", fail_path, "FAILED") + 1
    for _ in range(3):
        noop.enqueue()
    fail_value_error.enqueue()
    runtime = background_worker(heartbeat_interval=0.1)

    def reported() -> dict | None:
        families = scrape()
        finished = families.get("dbqueue_jobs_finished", {})
        done = value(
            finished,
            "dbqueue_jobs_finished_total",
            task=noop_path,
            process=runtime.worker_id,
        )
        return families if done == succeeded else None

    families = wait_for(reported)
    mine = {"process": runtime.worker_id}
    assert (
        value(
            families["dbqueue_jobs_enqueued"],
            "dbqueue_jobs_enqueued_total",
            task=noop_path,
            **mine,
        )
        == enqueued
    )
    assert (
        value(
            families["dbqueue_jobs_finished"],
            "dbqueue_jobs_finished_total",
            task=fail_path,
            status="FAILED",
            **mine,
        )
        == failed
    )
    durations = families["dbqueue_job_duration_seconds"]
    labels = {"task": noop_path, "status": "SUCCESSFUL", **mine}
    histogram = "dbqueue_job_duration_seconds"
    assert value(durations, f"{histogram}_count", **labels) == succeeded
    assert value(durations, f"{histogram}_bucket", le="+Inf", **labels) == succeeded
    # Buckets are cumulative, and a no-op takes well under a second.
    assert value(durations, f"{histogram}_bucket", le="1.0", **labels) == succeeded
    assert value(durations, f"{histogram}_bucket", le="0.01", **labels) <= succeeded
