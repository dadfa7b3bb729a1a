"""Wake-ups: a job enqueued elsewhere starts without waiting for a poll."""

import subprocess
import sys

import pytest
from django.db import connection

from dbqueue_embedded import wakeups
from tests.conftest import ROOT, requires_postgres, subprocess_env, wait_for
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

ENQUEUE_ELSEWHERE = (
    "import django; django.setup(); "
    "from tests.testapp.tasks import record; record.enqueue({label!r})"
)


def enqueue_in_another_process(label):
    subprocess.run(
        [sys.executable, "-c", ENQUEUE_ELSEWHERE.format(label=label)],
        cwd=ROOT,
        env=subprocess_env(),
        check=True,
        timeout=60,
    )


def listener_backends(runtime):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            [f"dbqueue_embedded listener {runtime.worker_id}"],
        )
        return [pid for (pid,) in cursor.fetchall()]


def ran(label):
    return Execution.objects.filter(label=label).exists()


@requires_postgres
def test_a_job_enqueued_by_another_process_starts_at_once(background_worker):
    # With a poll interval of a minute, only the NOTIFY can start the job.
    runtime = background_worker(poll_interval=60)
    wait_for(lambda: listener_backends(runtime))
    enqueue_in_another_process("elsewhere")
    wait_for(lambda: ran("elsewhere"), timeout=10)


@requires_postgres
def test_the_listener_reconnects_after_its_connection_is_killed(background_worker):
    runtime = background_worker(poll_interval=60)
    [first] = wait_for(lambda: listener_backends(runtime))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first])
    wait_for(lambda: listener_backends(runtime) not in ([], [first]), timeout=15)
    enqueue_in_another_process("after reconnect")
    wait_for(lambda: ran("after reconnect"), timeout=10)


@requires_postgres
def test_a_wake_up_for_other_queues_leaves_the_runtime_asleep(background_worker):
    runtime = background_worker(poll_interval=60, worker_queues="emails")
    wait_for(lambda: listener_backends(runtime))
    enqueue_in_another_process("default queue")
    mine = tasks.record.using(queue_name="emails").enqueue("mine")
    wait_for(lambda: ran("mine"))
    assert mine.id
    assert not ran("default queue")


def test_wake_up_payloads_round_trip_and_stay_small():
    assert wakeups.decode(wakeups.encode("default", {"b", "a"})) == (
        "default",
        ["a", "b"],
    )
    many = {f"queue-{index}" for index in range(2000)}
    assert wakeups.decode(wakeups.encode("default", many)) == ("default", None)
