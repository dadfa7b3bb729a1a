"""Running jobs: results, failures, async tasks, signals and logs.

Conformance sections B and C of reference/notes/django_tasks.md, with the
real runtime instead of immediate execution: enqueue, run the worker, refresh.
"""

import logging
import threading

import pytest
from asgiref.sync import async_to_sync
from django.tasks import TaskResultStatus, default_task_backend
from django.tasks.signals import task_enqueued, task_finished, task_started

from dbqueue_embedded.backend import DatabaseBackend
from dbqueue_embedded.exceptions import UnknownTask
from dbqueue_embedded.models import Job
from tests.conftest import insert_jobs_with_paths
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_successful_job_records_its_result(run_worker):
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert result.enqueued_at is not None
    assert (result.started_at, result.finished_at, result.attempts) == (None, None, 0)

    runtime = run_worker()
    result.refresh()

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.args == [2, 3]
    assert result.kwargs == {}
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    assert result.worker_ids == [runtime.worker_id]
    assert result.attempts == 1
    assert result.errors == []


def test_arefresh_reads_the_outcome(run_worker):
    result = tasks.add.enqueue(20, 22)
    run_worker()
    async_to_sync(result.arefresh)()
    assert result.return_value == 42


def test_a_failing_job_records_the_exception_and_traceback(run_worker):
    result = tasks.fail_value_error.enqueue("broken glass")
    run_worker()
    result.refresh()

    assert result.status == TaskResultStatus.FAILED
    assert result.finished_at is not None
    with pytest.raises(ValueError, match=r"^Task failed$"):
        _ = result.return_value
    [error] = result.errors
    assert error.exception_class is ValueError
    assert error.exception_class_path == "builtins.ValueError"
    assert error.traceback.endswith("ValueError: broken glass\n")
    assert "fail_value_error" in error.traceback


@pytest.mark.parametrize(
    ("failing_task", "exception"),
    [
        (tasks.fail_system_exit, SystemExit),
        (tasks.fail_keyboard_interrupt, KeyboardInterrupt),
    ],
)
def test_systemexit_and_keyboardinterrupt_fail_the_job_not_the_worker(
    run_worker, failing_task, exception
):
    failing = failing_task.enqueue()
    after = tasks.add.using(priority=-1).enqueue(1, 1)
    run_worker(concurrency=1)
    failing.refresh()
    after.refresh()
    assert failing.status == TaskResultStatus.FAILED
    assert failing.errors[0].exception_class is exception
    assert after.status == TaskResultStatus.SUCCESSFUL


def test_a_return_value_that_is_not_json_fails_with_a_clear_error(run_worker):
    result = tasks.return_unserializable.enqueue()
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is TypeError
    assert "Unsupported type: <class 'function'>" in error.traceback
    assert "must be JSON-serializable" in error.traceback


def test_nul_characters_get_a_clear_error_and_never_block_other_outcomes(
    run_worker,
):
    # PostgreSQL's JSON cannot hold "\x00": on both databases an argument
    # with one is refused at enqueue, a return value with one fails its job,
    # and an error message with one is stored escaped.
    with pytest.raises(ValueError, match="NUL character"):
        tasks.echo.enqueue("a\x00b")
    assert not Job.objects.exists()
    returned = tasks.return_nul.enqueue()
    raised = tasks.fail_with_nul.enqueue()
    fine = tasks.add.enqueue(1, 2)
    run_worker()
    for result in (returned, raised, fine):
        result.refresh()
    assert returned.status == TaskResultStatus.FAILED
    assert "NUL character" in returned.errors[0].traceback
    assert raised.status == TaskResultStatus.FAILED
    assert "ValueError: bad byte \\x00 here" in raised.errors[0].traceback
    assert fine.status == TaskResultStatus.SUCCESSFUL


def test_return_values_come_back_as_json(run_worker):
    result = tasks.echo.enqueue(1.5, None, True, "x", [1, [2]], key={"a": 1})
    run_worker()
    result.refresh()
    assert result.return_value == {
        "args": [1.5, None, True, "x", [1, [2]]],
        "kwargs": {"key": {"a": 1}},
    }


def test_a_task_taking_context_gets_its_result_and_attempt(run_worker):
    result = tasks.context_info.enqueue()
    run_worker()
    result.refresh()
    assert result.return_value == {"id": result.id, "attempt": 1}


def test_async_tasks_run_on_the_runtime(run_worker):
    results = [tasks.async_add.enqueue(index, 1) for index in range(5)]
    run_worker()
    for index, result in enumerate(results):
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.return_value == index + 1


def test_a_failing_async_task_records_its_traceback(run_worker):
    result = tasks.async_fail.enqueue()
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].traceback.endswith("RuntimeError: async boom\n")


def test_a_job_whose_task_no_longer_imports_fails_and_the_worker_goes_on(run_worker):
    [gone] = insert_jobs_with_paths(["tests.testapp.removed_module.task"])
    [not_a_task] = insert_jobs_with_paths(["tests.testapp.tasks.NOT_A_TASK"])
    after = tasks.add.enqueue(1, 2)
    # Not handed back for other processes: see test_reliability for that.
    run_worker(unknown_task_releases=0)

    gone.refresh_from_db()
    not_a_task.refresh_from_db()
    assert gone.status == not_a_task.status == TaskResultStatus.FAILED
    [error] = gone.errors
    assert error["exception_class_path"] == "dbqueue_embedded.exceptions.UnknownTask"
    assert (
        "Task 'tests.testapp.removed_module.task' could not be imported: "
        "ModuleNotFoundError: No module named 'tests.testapp.removed_module'"
    ) in error["traceback"]
    assert "is a str, not a task" in not_a_task.errors[0]["traceback"]
    after.refresh()
    assert after.return_value == 3
    with pytest.raises(UnknownTask):
        default_task_backend.get_result(str(gone.id))


def test_results_read_from_another_thread_are_equal(run_worker):
    result = tasks.add.enqueue(1, 1)
    run_worker()
    result.refresh()
    seen = []
    thread = threading.Thread(
        target=lambda: seen.append(default_task_backend.get_result(result.id))
    )
    thread.start()
    thread.join()
    assert seen[0] == result


def test_signals_are_sent_with_the_backend_class(run_worker):
    events = []

    def receiver(signal_name):
        def receive(sender, task_result, **kwargs):
            events.append((task_result.id, signal_name, sender, task_result.status))

        return receive

    receivers = {
        signal: receiver(name)
        for signal, name in [
            (task_enqueued, "enqueued"),
            (task_started, "started"),
            (task_finished, "finished"),
        ]
    }
    for signal, receive in receivers.items():
        signal.connect(receive)
    try:
        ok = tasks.add.enqueue(1, 2)
        failed = tasks.fail_value_error.enqueue()
        run_worker()
    finally:
        for signal, receive in receivers.items():
            signal.disconnect(receive)

    for result, final in [
        (ok, TaskResultStatus.SUCCESSFUL),
        (failed, TaskResultStatus.FAILED),
    ]:
        assert [event[1:] for event in events if event[0] == result.id] == [
            ("enqueued", DatabaseBackend, TaskResultStatus.READY),
            ("started", DatabaseBackend, TaskResultStatus.RUNNING),
            ("finished", DatabaseBackend, final),
        ]


def test_task_finished_is_sent_after_the_outcome_is_stored(run_worker):
    stored_statuses = []

    def receive(sender, task_result, **kwargs):
        stored_statuses.append(Job.objects.get(id=task_result.id).status)

    task_finished.connect(receive)
    try:
        tasks.add.enqueue(1, 2)
        tasks.async_add.enqueue(1, 2)
        run_worker()
    finally:
        task_finished.disconnect(receive)
    assert stored_statuses == [TaskResultStatus.SUCCESSFUL] * 2


def test_django_tasks_logs_each_step_and_the_failure_traceback(run_worker, caplog):
    caplog.set_level(logging.DEBUG, logger="django.tasks")
    ok = tasks.add.enqueue(1, 2)
    failed = tasks.async_fail.enqueue()
    run_worker()

    def logged(result):
        return [
            record
            for record in caplog.records
            if record.name == "django.tasks"
            and f"id={result.id} " in record.msg % record.args
        ]

    ok_logs, failed_logs = logged(ok), logged(failed)
    assert [r.getMessage() for r in ok_logs] == [
        f"Task id={ok.id} path=tests.testapp.tasks.add enqueued backend=default",
        f"Task id={ok.id} path=tests.testapp.tasks.add state=RUNNING",
        f"Task id={ok.id} path=tests.testapp.tasks.add state=SUCCESSFUL",
    ]
    path = "tests.testapp.tasks.async_fail"
    assert [r.getMessage() for r in failed_logs] == [
        f"Task id={failed.id} path={path} enqueued backend=default",
        f"Task id={failed.id} path={path} state=RUNNING",
        f"Task id={failed.id} path={path} state=FAILED",
    ]
    assert ok_logs[-1].exc_info is None
    assert failed_logs[-1].levelno == logging.ERROR
    assert failed_logs[-1].exc_info[0] is RuntimeError
