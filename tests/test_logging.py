"""Logging: a startup line per runtime, a record per job event, with extras."""

import logging

import pytest
from django.db import connection

from tests.conftest import finished, wait_for
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

JOB_FIELDS = {"event", "job_id", "task", "queue", "attempt", "worker_id"}


def job_records(caplog, result, event):
    return [
        record
        for record in caplog.records
        if record.name == "dbqueue_embedded.jobs"
        and getattr(record, "job_id", None) == result.id
        and record.event == event
    ]


def test_the_startup_line_states_what_the_runtime_is(caplog, run_worker):
    caplog.set_level(logging.INFO, logger="dbqueue_embedded.runtime")
    runtime = run_worker(concurrency=3, worker_queues=("emails", "default"))
    [started] = [r for r in caplog.records if " started: " in r.getMessage()]
    listener = 1 if connection.vendor == "postgresql" else 0

    assert started.name == "dbqueue_embedded.runtime"
    assert started.levelno == logging.INFO
    assert started.worker_id == runtime.worker_id
    assert started.mode == "standalone"
    assert (started.backend, started.database) == ("default", "default")
    assert started.vendor == connection.vendor
    assert started.queues == ["emails", "default"]
    assert started.concurrency == 3
    # No web threads in a standalone worker: 3 job threads, 3 of the runtime.
    assert started.connection_budget == 6 + listener
    text = started.getMessage()
    assert f"Runtime {runtime.worker_id} started: mode=standalone" in text
    assert f"database=default ({connection.vendor}) queues=emails,default" in text
    assert "concurrency=3 " in text
    assert (
        f"connections=up to {6 + listener} = web threads 0 + job threads 3 + runtime 3"
    ) in text


def test_an_embedded_runtime_counts_its_web_threads(caplog, background_worker):
    caplog.set_level(logging.INFO, logger="dbqueue_embedded.runtime")
    runtime = background_worker(mode="embedded", web_threads=4)
    started = wait_for(
        lambda: [r for r in caplog.records if getattr(r, "mode", None) == "embedded"]
    )[0]
    assert started.worker_id == runtime.worker_id
    assert started.concurrency == 8  # the embedded default
    listener = 1 if connection.vendor == "postgresql" else 0
    assert started.connection_budget == runtime.budget.total == 4 + 8 + 3 + listener


def test_a_failed_job_is_an_error_with_its_fields_and_traceback(caplog, run_worker):
    caplog.set_level(logging.INFO, logger="dbqueue_embedded.jobs")
    result = tasks.fail_value_error.enqueue("the printer is on fire")
    runtime = run_worker()

    [failed] = job_records(caplog, result, "failed")
    assert failed.levelno == logging.ERROR
    assert JOB_FIELDS | {"duration"} <= vars(failed).keys()
    assert failed.task == "tests.testapp.tasks.fail_value_error"
    assert failed.queue == "default"
    assert failed.attempt == 1
    assert failed.worker_id == runtime.worker_id
    assert 0 <= failed.duration < 5
    exc_type, exc, _ = failed.exc_info
    assert exc_type is ValueError
    assert str(exc) == "the printer is on fire"
    assert failed.getMessage() == (
        f"Job {result.id} (tests.testapp.tasks.fail_value_error) failed in "
        f"{failed.duration:.3f} s with builtins.ValueError: the printer is on fire "
        "(attempt 1, queue default)"
    )
    assert "Traceback (most recent call last)" in caplog.text


def test_a_retried_job_is_a_warning(caplog, background_worker):
    caplog.set_level(logging.INFO, logger="dbqueue_embedded.jobs")
    background_worker()
    result = tasks.flaky.enqueue(failures=1)
    wait_for(lambda: finished(result))
    [retrying] = job_records(caplog, result, "retrying")
    assert retrying.levelno == logging.WARNING
    assert retrying.attempt == 1
    assert "builtins.ConnectionError: attempt 1; retrying" in retrying.getMessage()
    assert job_records(caplog, result, "failed") == []


def test_starts_and_successes_are_debug_records(caplog, run_worker):
    caplog.set_level(logging.DEBUG, logger="dbqueue_embedded.jobs")
    result = tasks.sleep_for.using(queue_name="slow").enqueue(0.1)
    run_worker()

    [started] = job_records(caplog, result, "started")
    [succeeded] = job_records(caplog, result, "succeeded")
    assert started.levelno == succeeded.levelno == logging.DEBUG
    assert not hasattr(started, "duration")
    assert succeeded.queue == "slow"
    assert 0.1 <= succeeded.duration < 5
    assert succeeded.getMessage().startswith(
        f"Job {result.id} (tests.testapp.tasks.sleep_for) succeeded in 0."
    )


def test_at_info_a_successful_job_logs_nothing(caplog, run_worker):
    caplog.set_level(logging.INFO, logger="dbqueue_embedded.jobs")
    result = tasks.add.enqueue(1, 2)
    run_worker()
    assert [r for r in caplog.records if r.name == "dbqueue_embedded.jobs"] == []
    result.refresh()
    assert result.return_value == 3
