"""The django.tasks API surface: backend, validation, bad input.

Conformance section A of reference/notes/django_tasks.md. The system checks
are in test_checks.py.
"""

import pickle
import re
from datetime import datetime, timedelta

import django
import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.db import NotSupportedError
from django.tasks import (
    Task,
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
)
from django.tasks.exceptions import (
    InvalidTask,
    InvalidTaskBackend,
    TaskResultDoesNotExist,
    TaskResultMismatch,
)
from django.test import override_settings
from django.utils import timezone

from dbqueue_embedded import store
from dbqueue_embedded.backend import DatabaseBackend
from dbqueue_embedded.models import Job
from dbqueue_embedded.runtime.budget import connection_budget, pool_size
from dbqueue_embedded.runtime.supervisor import Runtime
from tests.testapp import tasks

DJANGO_61 = django.VERSION >= (6, 1)
BACKEND = "dbqueue_embedded.backend.DatabaseBackend"


def test_backend_is_configured_with_its_alias_and_options():
    backend = task_backends["default"]
    assert isinstance(backend, DatabaseBackend)
    assert backend.alias == "default"
    assert backend.options == {"poll_interval": 0.05}
    assert backend.supports_defer
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_priority


def test_both_decorator_forms_build_tasks_of_the_backend_task_class():
    assert isinstance(tasks.noop, DatabaseBackend.task_class)
    assert isinstance(tasks.add, Task)
    assert tasks.noop.module_path == "tests.testapp.tasks.noop"


def test_using_returns_an_equal_copy_and_leaves_the_original_unchanged():
    assert tasks.noop.using() == tasks.noop
    assert tasks.noop.using() is not tasks.noop
    changed = tasks.noop.using(priority=10).using(queue_name="emails")
    assert (changed.priority, changed.queue_name) == (10, "emails")
    assert (tasks.noop.priority, tasks.noop.queue_name) == (0, "default")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"priority": 101}, "priority must be a whole number between -100 and 100."),
        ({"priority": -101}, "priority must be a whole number between -100 and 100."),
        ({"priority": 1.5}, "priority must be a whole number between -100 and 100."),
        ({"run_after": datetime(2030, 1, 1)}, "run_after must be an aware datetime."),
    ],
)
def test_invalid_options_raise_invalid_task(change, message):
    with pytest.raises(InvalidTask, match=f"^{re.escape(message)}$"):
        tasks.noop.using(**change)


def test_priority_bounds_are_inclusive():
    assert tasks.noop.using(priority=100).priority == 100
    assert tasks.noop.using(priority=-100).priority == -100


def test_a_task_that_takes_context_needs_a_context_argument():
    def no_context():
        pass

    no_context.__qualname__ = "no_context"  # looks module-level
    with pytest.raises(
        InvalidTask, match="does not have a first argument of 'context'"
    ):
        Task(
            func=no_context,
            priority=0,
            backend="default",
            queue_name="default",
            run_after=None,
            takes_context=True,
        )


def test_functions_not_at_module_level_are_refused():
    def local():
        pass

    with pytest.raises(InvalidTask, match="Task function must be defined at a module"):
        task(local)


def test_a_queue_name_longer_than_the_column_is_refused():
    with pytest.raises(InvalidTask, match="longer than 100 characters"):
        tasks.noop.using(queue_name="q" * 101)


@override_settings(
    TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["default", "emails"]}}
)
def test_queues_are_validated_when_listed():
    assert tasks.noop.using(queue_name="emails").queue_name == "emails"
    with pytest.raises(
        InvalidTask, match=r"^Queue 'reports' is not valid for backend\.$"
    ):
        tasks.noop.using(queue_name="reports")


def test_an_empty_queue_list_allows_any_queue():
    assert tasks.noop.using(queue_name="anything").queue_name == "anything"


@pytest.mark.django_db
def test_enqueue_validates_again_against_current_settings():
    emails = tasks.noop.using(queue_name="emails")
    with override_settings(
        TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["default"]}}
    ):
        with pytest.raises(InvalidTask, match="Queue 'emails' is not valid"):
            emails.enqueue()
        with pytest.raises(InvalidTask, match="Queue 'emails' is not valid"):
            async_to_sync(emails.aenqueue)()
    assert not Job.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "kwargs", "unsupported"),
    [
        ((datetime(2030, 1, 1),), {}, "datetime.datetime"),
        ((), {"when": {1, 2}}, "set"),
        ((object(),), {}, "object"),
    ],
)
def test_arguments_that_are_not_json_raise_typeerror_and_write_nothing(
    args, kwargs, unsupported
):
    message = f"^Unsupported type: <class '{re.escape(unsupported)}'>$"
    with pytest.raises(TypeError, match=message):
        tasks.echo.enqueue(*args, **kwargs)
    with pytest.raises(TypeError, match=message):
        async_to_sync(tasks.echo.aenqueue)(*args, **kwargs)
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_nan_cannot_be_stored_and_writes_nothing():
    with pytest.raises(ValueError, match="Out of range float values"):
        tasks.echo.enqueue(float("nan"))
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_arguments_are_returned_as_the_task_will_receive_them():
    result = tasks.echo.enqueue((1, 2), b"bytes", {1: "one"}, key=("a",))
    # JSON has no tuples, no bytes and only string keys.
    assert result.args == [[1, 2], "bytes", {"1": "one"}]
    assert result.kwargs == {"key": ["a"]}
    assert result.status == TaskResultStatus.READY
    assert result.backend == "default"


@pytest.mark.django_db
def test_bulk_enqueue_writes_nothing_if_one_call_is_invalid():
    backend = default_task_backend
    with pytest.raises(TypeError, match="Unsupported type"):
        backend.bulk_enqueue([(tasks.add, (1, 2), {}), (tasks.echo, (object(),), {})])
    with pytest.raises(InvalidTask):
        backend.bulk_enqueue(
            [(tasks.add, (1, 2), {}), (tasks.noop.using(priority=200), (), {})]
        )
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_bulk_enqueue_returns_one_result_per_call_in_order():
    results = default_task_backend.bulk_enqueue(
        [(tasks.add, (index, index), {}) for index in range(5)]
    )
    assert [result.args for result in results] == [[index, index] for index in range(5)]
    assert Job.objects.count() == 5
    assert default_task_backend.bulk_enqueue([]) == []


@pytest.mark.django_db
@pytest.mark.parametrize("result_id", ["0" * 32, "not-a-uuid", "", "1" * 200])
def test_unknown_or_malformed_ids_raise_result_does_not_exist(result_id):
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result_id)
    with pytest.raises(TaskResultDoesNotExist):
        async_to_sync(default_task_backend.aget_result)(result_id)


@pytest.mark.django_db
def test_a_result_fetched_through_another_task_is_a_mismatch():
    result = tasks.add.enqueue(1, 2)
    with pytest.raises(TaskResultMismatch, match=r"tests\.testapp\.tasks\.add"):
        tasks.noop.get_result(result.id)
    with pytest.raises(TaskResultMismatch):
        async_to_sync(tasks.noop.aget_result)(result.id)
    assert tasks.add.get_result(result.id).id == result.id


@pytest.mark.django_db
def test_get_result_reads_the_stored_job():
    enqueued = tasks.add.using(priority=7, queue_name="maths").enqueue(1, 2)
    fetched = default_task_backend.get_result(enqueued.id)
    assert fetched.id == enqueued.id
    assert fetched.status == TaskResultStatus.READY
    assert fetched.task.priority == 7
    assert fetched.task.queue_name == "maths"
    assert fetched.args == [1, 2]
    assert fetched.enqueued_at == enqueued.enqueued_at
    assert fetched.attempts == 0
    with pytest.raises(ValueError, match=r"^Task has not finished yet$"):
        _ = fetched.return_value


@pytest.mark.django_db
def test_run_after_is_kept_on_the_result():
    later = timezone.now() + timedelta(hours=1)
    result = tasks.noop.using(run_after=later).enqueue()
    assert default_task_backend.get_result(result.id).task.run_after == later


@pytest.mark.skipif(not DJANGO_61, reason="Tasks can be pickled from Django 6.1")
@pytest.mark.django_db
def test_tasks_and_results_pickle():
    result = tasks.add.enqueue(1, 2)
    assert pickle.loads(pickle.dumps(tasks.add)) == tasks.add
    assert pickle.loads(pickle.dumps(result)).id == result.id


def test_an_unknown_backend_alias_is_invalid():
    with pytest.raises(InvalidTaskBackend):
        task_backends["missing"]


@override_settings(TASKS={})
def test_enqueue_without_a_default_backend_is_invalid():
    with pytest.raises(InvalidTaskBackend):
        task_backends["default"]


def test_options_are_parsed_with_defaults():
    backend = DatabaseBackend(
        "default",
        {
            "BACKEND": BACKEND,
            "OPTIONS": {"worker_queues": "high, default", "concurrency": 3},
        },
    )
    options = backend.runtime_options
    assert [str(selector) for selector in options.worker_queues] == ["high", "default"]
    assert options.concurrency == 3
    assert options.poll_interval == 1.0
    assert backend.option_errors == []


@pytest.mark.parametrize("pattern", ["", "a*b", "**", "*x"])
def test_malformed_queue_selectors_are_refused(pattern):
    backend = DatabaseBackend(
        "default", {"BACKEND": BACKEND, "OPTIONS": {"worker_queues": [pattern]}}
    )
    assert [message.id for message in backend.check()] == ["dbqueue_embedded.E002"]


@pytest.mark.skipif(not DJANGO_61, reason="task() passes options on from Django 6.1")
def test_unknown_task_options_are_refused():
    def job():
        pass

    job.__qualname__ = "job"
    with pytest.raises(TypeError, match="unexpected keyword argument 'retries'"):
        task(retries=3)(job)


def test_only_postgresql_and_sqlite_are_supported():
    class OtherDatabase:
        vendor = "oracle"
        display_name = "Oracle"

    with pytest.raises(
        NotSupportedError, match="supports PostgreSQL and SQLite, not Oracle"
    ):
        store.dialect(OtherDatabase())


@override_settings(
    TASKS={"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
)
def test_the_runtime_refuses_a_backend_that_is_not_the_database_backend():
    with pytest.raises(
        ImproperlyConfigured, match="DummyBackend, not dbqueue_embedded"
    ):
        Runtime()


def test_the_connection_budget_counts_web_job_and_runtime_connections():
    budget = connection_budget(concurrency=8, web_threads=4, vendor="postgresql")
    assert (budget.from_django, budget.total) == (15, 16)
    assert str(budget) == (
        "16 = web threads 4 + job threads 8 + runtime 3 + listener 1"
    )
    assert connection_budget(concurrency=8, web_threads=0, vendor="sqlite").total == 11


@pytest.mark.parametrize(
    ("options", "size"),
    [({}, None), ({"pool": True}, 4), ({"pool": {"min_size": 2, "max_size": 30}}, 30)],
)
def test_the_pool_size_is_read_from_the_database_options(options, size):
    assert pool_size({"OPTIONS": options}) == size
