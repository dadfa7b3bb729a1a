"""OPTIONS["database"]: the queue's tables and queries in a database of their own."""

import json
import subprocess
import sys
import uuid

import pytest
from django.core import checks
from django.db import connection
from django.test import override_settings

from dbqueue_embedded.backend import DatabaseBackend
from tests.conftest import ROOT, TEST_DATABASE, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

REPORT = """
import json
from django.db import connections, transaction
from tests.testapp.tasks import add
with transaction.atomic(using="default"):
    result = add.enqueue(2, 3)
print(json.dumps({
    "id": str(result.id),
    **{
        alias: sorted(
            t for t in connections[alias].introspection.table_names()
            if t.startswith("dbqueue")
        )
        for alias in ("default", "queue")
    },
}))
"""


@pytest.fixture
def two_databases(tmp_path):
    """Names of an application database and a queue database, both empty."""
    if TEST_DATABASE == "sqlite":
        yield str(tmp_path / "app.sqlite3"), str(tmp_path / "queue.sqlite3")
        return
    names = [f"dbq_{role}_{uuid.uuid4().hex[:8]}" for role in ("app", "queue")]
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f'CREATE DATABASE "{name}"')
    yield tuple(names)
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def django(databases, *arguments):
    app, queue = databases
    result = subprocess.run(
        [sys.executable, "-m", "django", *arguments],
        cwd=ROOT,
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="tests.dedicated_settings",
            DBQUEUE_APP_DB=app,
            DBQUEUE_QUEUE_DB=queue,
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_queue_lives_in_its_own_database(two_databases):
    django(two_databases, "migrate", "--verbosity", "0")
    django(two_databases, "migrate", "--database", "queue", "--verbosity", "0")
    report = json.loads(django(two_databases, "shell", "-v", "0", "-c", REPORT))
    assert report["default"] == []  # migrations left the queue out
    assert "dbqueue_embedded_job" in report["queue"]

    django(two_databases, "dbqueue_worker", "--burst")
    result = django(
        two_databases,
        "shell",
        "-v",
        "0",
        "-c",
        "from tests.testapp.tasks import add; "
        f"print(add.get_backend().get_result({report['id']!r}).return_value)",
    )
    assert result.strip() == "5"


def backend_with(**options):
    return DatabaseBackend("default", {"OPTIONS": options})


def test_checks_for_the_queue_database():
    [error] = [
        m for m in backend_with(database="nope").check() if m.id.endswith("E007")
    ]
    assert "'nope', which is not in DATABASES" in error.msg
    assert any(m.id.endswith("W001") for m in backend_with(database="default").check())
    with override_settings(DATABASE_ROUTERS=["dbqueue_embedded.routers.QueueRouter"]):
        messages = backend_with(database="default").check()
    assert not [m for m in messages if m.level >= checks.WARNING]
