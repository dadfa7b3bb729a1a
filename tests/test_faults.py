"""Database faults: killed connections, a restarted server, a busy SQLite file.

The runtime must come back by itself, without restarting its process, and
run what was enqueued meanwhile.
"""

import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.tasks import default_task_backend

from tests.conftest import finished, requires_postgres, requires_sqlite, wait_for
from tests.testapp import tasks
from tests.testapp.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


def listening_sessions():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE 'dbqueue_embedded listener%%'"
        )
        return cursor.fetchone()[0]


def terminate_other_backends():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@requires_postgres
def test_the_runtime_reconnects_after_its_backends_are_terminated(background_worker):
    # Polls are rare here: jobs run this fast only if the listener is back.
    runtime = background_worker(poll_interval=30)
    first = tasks.add.enqueue(1, 1)
    wait_for(lambda: finished(first))
    wait_for(lambda: listening_sessions() == 1)

    assert terminate_other_backends() >= 2  # listener, claims, outcomes
    wait_for(lambda: listening_sessions() == 1)
    results = [tasks.add.enqueue(index, 1) for index in range(5)]
    for result in results:
        wait_for(lambda result=result: finished(result))
    assert runtime.is_running


def _pg_ctlcluster() -> list[str]:
    clusters = Path("/etc/postgresql")
    if not shutil.which("pg_ctlcluster") or not clusters.is_dir():
        pytest.skip("pg_ctlcluster is not available to restart PostgreSQL")
    [version] = [path.name for path in clusters.iterdir()]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


@requires_postgres
def test_the_runtime_recovers_from_a_postgresql_restart(background_worker):
    command = _pg_ctlcluster()
    runtime = background_worker()
    before = tasks.add.enqueue(1, 1)
    wait_for(lambda: finished(before))

    connections.close_all()
    subprocess.run([*command, "restart"], check=True, timeout=60)
    # Enqueued while the runtime still finds its connections broken.
    result = tasks.add.enqueue(2, 2)
    wait_for(lambda: finished(result), timeout=20)
    assert result.return_value == 4
    wait_for(lambda: listening_sessions() == 1)
    assert runtime.is_running


@requires_sqlite
def test_web_writes_never_see_database_is_locked_while_the_queue_drains(
    background_worker, monkeypatch
):
    # Web requests wait at most one second for the write lock, a fifth of
    # Django's default: the queue's write transactions must be far shorter.
    monkeypatch.setitem(connections.settings["default"]["OPTIONS"], "timeout", 1)
    default_task_backend.bulk_enqueue([(tasks.noop, (), {})] * 3000)
    background_worker(concurrency=8)
    errors = []

    def write_like_a_web_request(worker: int) -> None:
        try:
            for number in range(150):
                Order.objects.create(number=number)
                with transaction.atomic():
                    Order.objects.create(number=number)
                    tasks.noop.enqueue()
        except OperationalError as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=write_like_a_web_request, args=(index,))
        for index in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Order.objects.count() == 4 * 150 * 2
