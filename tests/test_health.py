"""``manage.py dbqueue_health``: liveness and loop states, exit code 0 or 1."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from dbqueue_embedded.models import WorkerProcess
from tests.conftest import register_process, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def health(*arguments):
    """The command's output and exit code."""
    out = io.StringIO()
    try:
        call_command("dbqueue_health", *arguments, stdout=out)
    except SystemExit as exc:
        return out.getvalue(), exc.code
    return out.getvalue(), 0


def test_no_process_is_unhealthy():
    output, code = health()
    assert code == 1
    assert "No process runs the queue." in output


def test_a_running_runtime_reports_each_loop(background_worker):
    runtime = background_worker(heartbeat_interval=0.05)
    wait_for(
        lambda: WorkerProcess.objects.filter(
            id=runtime.worker_id, loops__has_key="worker"
        )
    )
    output, code = health("--json")
    assert code == 0
    report = json.loads(output)
    assert report["healthy"] is True
    [process] = report["processes"]
    assert process["id"] == runtime.worker_id
    assert process["alive"] is True
    assert {"worker", "completer", "heartbeat", "recovery"} <= set(process["loops"])
    assert all(loop["state"] == "running" for loop in process["loops"].values())

    text, code = health()
    assert code == 0
    assert f"{runtime.worker_id} (standalone," in text
    assert "  worker: running, 0 restart(s)" in text


def test_a_silent_process_and_a_restarting_loop_are_unhealthy():
    register_process(
        "silent", hostname="web-1", pid=7, heartbeat_age=timedelta(minutes=5)
    )
    output, code = health()
    assert code == 1
    assert "silent (embedded, web-1 pid 7): NOT HEARTBEATING" in output

    WorkerProcess.objects.filter(id="silent").update(
        last_heartbeat_at=timezone.now(),
        loops={"worker": {"state": "restarting", "restarts": 2, "last_error": "boom"}},
    )
    output, code = health("--hostname", "web-1")
    assert code == 1
    assert "worker: restarting, 2 restart(s), last error: boom" in output
    assert health("--hostname", "web-2")[1] == 1  # nothing runs there


def test_an_unknown_backend_is_a_clear_error():
    with pytest.raises(CommandError, match="There is no task backend 'nope'"):
        call_command("dbqueue_health", "--backend", "nope")
