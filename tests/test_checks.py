"""System checks (``manage.py check``): each fires on its misconfiguration and
stays quiet on a good one.

Checks tagged ``database`` run only with ``check --database``: here
``run_checks(databases=["default"])``.
"""

import os
import shutil
import subprocess
import sys
import threading
from io import StringIO
from pathlib import Path

import pytest
from django.core.checks import CheckMessage, run_checks
from django.core.checks.registry import registry
from django.core.management import call_command
from django.db import connection
from django.tasks import default_task_backend
from django.test import override_settings

from dbqueue_embedded.backend import DatabaseBackend
from dbqueue_embedded.models import RecurringTask
from dbqueue_embedded.recurring import (
    schedule_recurring_task,
    unschedule_recurring_task,
)
from dbqueue_embedded.runtime import embedded
from dbqueue_embedded.store import processes
from tests.conftest import ROOT, register_process, requires_postgres, requires_sqlite

BACKEND = "dbqueue_embedded.backend.DatabaseBackend"
EXAMPLE = ROOT / "example_project"


@pytest.fixture(autouse=True)
def only_the_queue_s_checks(monkeypatch):
    """Run the checks of the queue (and Django's for TASKS), registered and
    tagged as they are, without the rest of the project's."""
    monkeypatch.setattr(
        registry,
        "registered_checks",
        {
            check
            for check in registry.registered_checks
            if check.__module__.startswith(("dbqueue_embedded.", "django.tasks."))
        },
    )


def queue_messages(
    databases: list[str] | None = None, check_id: str | None = None
) -> list[CheckMessage]:
    """The messages ``check`` reports, or ``check --database`` with ``databases``;
    only those of ``check_id`` ("W007": dbqueue_embedded.W007) if given."""
    return [
        message
        for message in run_checks(databases=databases)
        if check_id is None or message.id == f"dbqueue_embedded.{check_id}"
    ]


def with_options(**options: object) -> dict:
    """TASKS with one queue backend and these OPTIONS."""
    return {"default": {"BACKEND": BACKEND, "OPTIONS": options}}


@pytest.fixture
def database_options(monkeypatch):
    """Replace the default database's OPTIONS (restored after the test)."""

    def replace(**changes: object) -> None:
        options = {**connection.settings_dict["OPTIONS"], **changes}
        monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)

    return replace


# The backend's own checks (E001-E005).


def test_the_backend_s_checks_pass_when_configured():
    assert default_task_backend.check() == []


@override_settings(INSTALLED_APPS=["django.contrib.contenttypes"])
def test_check_reports_the_app_missing_from_installed_apps():
    backend = DatabaseBackend("default", {"BACKEND": BACKEND})
    assert [message.id for message in backend.check()] == ["dbqueue_embedded.E001"]


def test_check_reports_each_bad_option():
    backend = DatabaseBackend(
        "default",
        {
            "BACKEND": BACKEND,
            "OPTIONS": {"concurrency": 0, "poll_interval": "fast", "speed": 11},
        },
    )
    messages = backend.check()
    assert [message.id for message in messages] == ["dbqueue_embedded.E002"] * 3
    text = " ".join(message.msg for message in messages)
    assert "'concurrency': must be a whole number of at least 1 (got 0)" in text
    assert "'poll_interval': must be a number of seconds (got 'fast')" in text
    assert "Unknown option 'speed'" in text


def test_check_reports_worker_queues_missing_from_queues():
    backend = DatabaseBackend(
        "default",
        {
            "BACKEND": BACKEND,
            "QUEUES": ["default"],
            "OPTIONS": {"worker_queues": ["default", "emails", "reports-*"]},
        },
    )
    assert [message.id for message in backend.check()] == ["dbqueue_embedded.E003"]


def test_check_reports_a_connection_pool_too_small_for_the_queue(monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", {"pool": True})
    [message] = default_task_backend.check()
    assert message.id == "dbqueue_embedded.E005"
    assert "holds 4 connections; a process running the queue may need 12" in message.msg


# SQLite settings (W002, W004, I003) and the file itself (W003).


@requires_sqlite
def test_an_init_command_setting_another_journal_mode_is_a_warning(database_options):
    assert not queue_messages(check_id="W002")
    database_options(init_command="PRAGMA foreign_keys=ON; PRAGMA journal_mode=DELETE")
    [warning] = queue_messages(check_id="W002")
    assert "sets journal_mode=DELETE, but the queue switches" in warning.msg
    assert "'database is locked'" in warning.msg


@requires_sqlite
@pytest.mark.django_db(transaction=True)
def test_a_sqlite_file_in_rollback_journal_mode_is_a_database_warning(
    database_options,
):
    database_options(init_command="")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=DELETE")
    connection.close()  # the next connection runs the init_command in force
    assert not queue_messages(check_id="W003")  # without --database
    [warning] = queue_messages(["default"], check_id="W003")
    assert "uses journal_mode=delete, not WAL" in warning.msg
    assert "switches the file to WAL when it starts" in warning.msg
    assert "Add 'PRAGMA journal_mode=WAL'" in warning.hint

    database_options(init_command="PRAGMA journal_mode=WAL")
    connection.close()
    assert not queue_messages(["default"], check_id="W003")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


@requires_sqlite
@pytest.mark.parametrize(
    ("options", "waits"),
    [
        ({"timeout": 5}, "wait 5 s for the write lock (OPTIONS['timeout'])"),
        ({}, "wait 5 s for the write lock (the default, as OPTIONS set no timeout)"),
        (
            {"timeout": 30, "init_command": "PRAGMA busy_timeout = 2000"},
            "wait 2 s for the write lock (busy_timeout in OPTIONS['init_command'])",
        ),
    ],
)
def test_a_short_sqlite_timeout_is_a_warning(monkeypatch, options, waits):
    assert not queue_messages(check_id="W004")
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    [warning] = queue_messages(check_id="W004")
    assert waits in warning.msg
    assert "the queue's own connections wait 20 s" in warning.msg
    assert "['OPTIONS']['timeout'] to 20 (seconds) or more" in warning.hint


@requires_sqlite
def test_a_busy_timeout_in_init_command_counts_as_the_timeout(database_options):
    database_options(timeout=1, init_command="PRAGMA busy_timeout(30000)")
    assert not queue_messages(check_id="W004")


@requires_sqlite
def test_deferred_sqlite_transactions_are_advised_against(database_options):
    assert not queue_messages(check_id="I003")
    database_options(transaction_mode="DEFERRED")
    [info] = queue_messages(check_id="I003")
    assert "start DEFERRED" in info.msg
    assert "'transaction_mode'] = 'IMMEDIATE'" in info.hint
    database_options(transaction_mode=None)  # Django's default: DEFERRED
    assert queue_messages(check_id="I003")


# PostgreSQL connections (I001, I002) and max_connections (W005).


@requires_postgres
def test_postgresql_without_persistent_connections_or_pool_is_advised_against(
    monkeypatch, database_options
):
    [info] = queue_messages(check_id="I001")  # the test settings
    assert "CONN_MAX_AGE = 0 and no pool" in info.msg
    assert "['OPTIONS']['pool'] = True" in info.hint
    database_options(pool=True)
    assert not queue_messages(check_id="I001")
    database_options(pool=False)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    assert not queue_messages(check_id="I001")


@requires_postgres
@pytest.mark.parametrize(
    ("max_age", "pool", "reused"),
    [(60, False, "CONN_MAX_AGE = 60"), (0, {"max_size": 20}, "a pool")],
)
def test_persistent_postgresql_connections_without_health_checks_are_advised_against(
    monkeypatch, database_options, max_age, pool, reused
):
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", max_age)
    database_options(pool=pool)
    [info] = queue_messages(check_id="I002")
    assert f"are reused ({reused}) without health checks" in info.msg
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", True)
    assert not queue_messages(check_id="I002")


@requires_postgres
@pytest.mark.django_db
def test_a_connection_budget_beyond_max_connections_is_a_database_warning():
    capacity = processes.connection_capacity(using="default")
    assert not queue_messages(["default"], check_id="W005")
    with override_settings(TASKS=with_options(concurrency=capacity)):
        assert not queue_messages(check_id="W005")  # without --database
        [warning] = queue_messages(["default"], check_id="W005")
    assert (
        f"One web process running the queue may open {capacity + 5} connections "
        f"('default': {capacity + 5} = web threads 1 + job threads {capacity} + "
        f"runtime 3 + listener 1), more than the {capacity} PostgreSQL database "
        "'default' accepts" in warning.msg
    )

    register_process("web-1", connection_budget=capacity - 10)
    assert not queue_messages(["default"], check_id="W005")
    register_process("web-2", connection_budget=11)
    [warning] = queue_messages(["default"], check_id="W005")
    assert (
        f"The 2 processes running the queue now may open up to {capacity + 1} "
        "connections together" in warning.msg
    )


# Recurring tasks scheduled through the Python API (W006).


@pytest.mark.django_db
def test_a_scheduled_recurring_task_whose_task_is_gone_is_a_database_warning():
    schedule_recurring_task("kept", "tests.testapp.tasks.noop", "* * * * *")
    assert not queue_messages(["default"], check_id="W006")
    # As a deploy that removed the task leaves the schedule.
    RecurringTask.objects.create(
        backend="default",
        key="gone",
        task_path="tests.testapp.tasks.removed",
        schedule="* * * * *",
    )
    assert not queue_messages(check_id="W006")  # without --database
    [warning] = queue_messages(["default"], check_id="W006")
    assert "Recurring task 'gone' of task backend 'default'" in warning.msg
    assert "'tests.testapp.tasks.removed' could not be imported" in warning.msg
    assert "unschedule_recurring_task('gone', backend='default')" in warning.hint
    unschedule_recurring_task("gone")
    assert not queue_messages(["default"], check_id="W006")


# The server integration (W007).


@pytest.fixture
def no_gunicorn_config(tmp_path, monkeypatch):
    """Run from a directory without gunicorn.conf.py."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("application", ["with_queue", "with_queue_inside_middleware"])
def test_an_asgi_application_wrapped_in_embedded_queue_is_found(
    no_gunicorn_config, application
):
    threads_before = set(threading.enumerate())
    path = f"tests.testapp.asgi_apps.{application}"
    with override_settings(ASGI_APPLICATION=path):
        assert not queue_messages(check_id="W007")
    # Importing the application started nothing.
    assert embedded.running() == []
    assert not [
        thread.name
        for thread in set(threading.enumerate()) - threads_before
        if thread.name.startswith("dbqueue")
    ]


@pytest.mark.parametrize(
    ("application", "finding"),
    [
        ("django_only", "is not wrapped in EmbeddedQueue"),
        ("middleware_without_queue", "is not wrapped in EmbeddedQueue"),
        ("missing", "could not be imported (ImportError: "),
    ],
)
def test_an_asgi_application_without_embedded_queue_is_a_warning(
    no_gunicorn_config, application, finding
):
    path = f"tests.testapp.asgi_apps.{application}"
    with override_settings(ASGI_APPLICATION=path):
        [warning] = queue_messages(check_id="W007")
    assert f"the ASGI application {path} {finding}" in warning.msg
    assert f"there is no gunicorn.conf.py in {no_gunicorn_config}" in warning.msg
    assert "EmbeddedQueue(get_asgi_application())" in warning.hint
    assert "import post_fork, worker_exit" in warning.hint
    assert "'dbqueue_embedded.W007' to SILENCED_SYSTEM_CHECKS" in warning.hint


@pytest.mark.parametrize(
    ("config", "runs_the_queue"),
    [
        ("from dbqueue_embedded.contrib.gunicorn import post_fork, worker_exit", True),
        ("from dbqueue_embedded.contrib import gunicorn\npost_fork = ...", True),
        (
            "# from dbqueue_embedded.contrib.gunicorn import post_fork\nworkers = 4",
            False,
        ),
    ],
)
def test_gunicorn_conf_py_must_import_the_hooks(
    no_gunicorn_config, config, runs_the_queue
):
    (no_gunicorn_config / "gunicorn.conf.py").write_text(config + "\n")
    messages = queue_messages(check_id="W007")
    assert bool(messages) != runs_the_queue
    if messages:
        assert (
            f"{no_gunicorn_config / 'gunicorn.conf.py'} does not import "
            "dbqueue_embedded.contrib.gunicorn" in messages[0].msg
        )


def test_gunicorn_conf_py_is_also_looked_for_in_base_dir(no_gunicorn_config, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "gunicorn.conf.py").write_text(
        "from dbqueue_embedded.contrib.gunicorn import post_fork, worker_exit\n"
    )
    assert queue_messages(check_id="W007")
    with override_settings(BASE_DIR=project):
        assert not queue_messages(check_id="W007")


def test_a_project_without_a_server_integration_can_silence_the_warning(
    no_gunicorn_config,
):
    output = StringIO()
    with override_settings(SILENCED_SYSTEM_CHECKS=[]):
        call_command("check", stderr=output, stdout=output)
    assert "dbqueue_embedded.W007" in output.getvalue()
    output = StringIO()
    with override_settings(SILENCED_SYSTEM_CHECKS=["dbqueue_embedded.W007"]):
        call_command("check", stderr=output, stdout=output)
    assert "W007" not in output.getvalue()


# The example project, as shipped.


def assert_example_checks_clean(project: Path, *arguments: str) -> None:
    """Run the example's ``manage.py check`` in ``project``; it must pass clean."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # manage.py sets the example's own
    result = subprocess.run(
        [sys.executable, "manage.py", "check", *arguments],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout, result.stderr


def test_the_example_project_passes_every_check(tmp_path):
    assert_example_checks_clean(EXAMPLE)
    # With its database too, in a copy: checking creates the SQLite file.
    copy = tmp_path / "example_project"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("*.sqlite3*"))
    assert_example_checks_clean(copy, "--database", "default")


# The dashboard's and the metrics endpoint's settings (E009, E010).


@pytest.mark.parametrize(
    "value", [{"token": "short"}, {}, {"tokn": "a-long-enough-token"}, "token"]
)
def test_a_bad_metrics_setting_is_an_error(settings, value):
    settings.DBQUEUE_METRICS = value
    [message] = queue_messages(check_id="E009")
    assert "DBQUEUE_METRICS" in message.msg


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DBQUEUE_DASHBOARD_PERMISSION", "view_job"),
        ("DBQUEUE_DASHBOARD_PERMISSION", ["dbqueue_embedded.view_job"]),
        ("DBQUEUE_DASHBOARD_REFRESH", 0),
        ("DBQUEUE_DASHBOARD_REFRESH", "5"),
    ],
)
def test_a_bad_dashboard_setting_is_an_error(settings, name, value):
    setattr(settings, name, value)
    [message] = queue_messages(check_id="E010")
    assert name in message.msg


def test_good_dashboard_and_metrics_settings_pass(settings):
    settings.DBQUEUE_METRICS = {"token": "a-long-enough-token", "permission": "a.b"}
    settings.DBQUEUE_DASHBOARD_PERMISSION = "dbqueue_embedded.view_job"
    settings.DBQUEUE_DASHBOARD_REFRESH = 2.5
    assert not queue_messages(check_id="E009") + queue_messages(check_id="E010")
