"""What a queue adds: ordering, deferral, queue selection and transactions.

Conformance section D of reference/notes/django_tasks.md.
"""

from datetime import timedelta
from functools import partial

import pytest
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend
from django.utils import timezone

from dbqueue_embedded.models import Job
from dbqueue_embedded.selectors import parse_selectors
from tests.conftest import finished, requires_postgres, wait_for
from tests.testapp import tasks
from tests.testapp.models import Execution, Order

pytestmark = pytest.mark.django_db(transaction=True)


def executed_labels():
    return list(Execution.objects.order_by("id").values_list("label", flat=True))


def test_higher_priority_runs_first_then_enqueue_order(run_worker):
    for label, priority in [("a", 0), ("b", 5), ("c", 0), ("d", -5), ("e", 5)]:
        tasks.record.using(priority=priority).enqueue(label)
    run_worker(concurrency=1)
    assert executed_labels() == ["b", "e", "a", "c", "d"]


def test_bulk_enqueued_jobs_run_in_enqueue_order(run_worker):
    default_task_backend.bulk_enqueue(
        [(tasks.record, (str(index),), {}) for index in range(30)]
    )
    run_worker(concurrency=1)
    assert executed_labels() == [str(index) for index in range(30)]


def test_jobs_due_in_the_future_wait_for_their_time(run_worker, background_worker):
    soon = timezone.now() + timedelta(seconds=1)
    later = tasks.record.using(run_after=soon).enqueue("later")
    now = tasks.record.using(run_after=timezone.now()).enqueue("now")
    run_worker()
    later.refresh()
    assert later.status == TaskResultStatus.READY
    assert executed_labels() == ["now"]

    background_worker(poll_interval=0.05)
    wait_for(lambda: finished(later))
    assert later.status == TaskResultStatus.SUCCESSFUL
    assert later.started_at >= soon
    now.refresh()
    assert now.started_at < soon


def test_a_past_run_after_orders_before_newer_jobs(run_worker):
    tasks.record.enqueue("new")
    tasks.record.using(run_after=timezone.now() - timedelta(hours=1)).enqueue("old")
    run_worker(concurrency=1)
    assert executed_labels() == ["old", "new"]


def enqueue_in_queues(*queues):
    return {
        queue: tasks.record.using(queue_name=queue).enqueue(queue) for queue in queues
    }


def test_a_worker_takes_only_the_queues_it_selects(run_worker):
    results = enqueue_in_queues("default", "emails-a", "emails-b", "emailsx", "other")
    run_worker(worker_queues=parse_selectors(["emails-*", "other"]))
    done = {queue for queue, result in results.items() if finished(result)}
    assert done == {"emails-a", "emails-b", "other"}


def test_selectors_earlier_in_the_list_are_preferred(run_worker):
    tasks.record.using(queue_name="low", priority=100).enqueue("low")
    tasks.record.using(queue_name="high").enqueue("high")
    tasks.record.using(queue_name="mid").enqueue("mid")
    run_worker(concurrency=1, worker_queues=parse_selectors(["high", "mid", "*"]))
    assert executed_labels() == ["high", "mid", "low"]


def test_prefix_selectors_compare_case_and_characters_exactly(run_worker):
    # Under LIKE, "_" matches any character, and SQLite ignores ASCII case.
    results = enqueue_in_queues("emails_a", "emails-a", "Emails_a")
    run_worker(worker_queues=parse_selectors(["emails_*"]))
    assert [queue for queue, result in results.items() if finished(result)] == [
        "emails_a"
    ]


def failing_checkout():
    """A view that enqueues, then fails before its transaction commits."""
    with transaction.atomic():
        Order.objects.create(number=1)
        tasks.record.enqueue("rolled back")
        transaction.on_commit(partial(tasks.record.enqueue, "on commit"))
        raise RuntimeError("the view failed")


def test_enqueue_rolls_back_with_the_callers_transaction():
    with pytest.raises(RuntimeError, match="the view failed"):
        failing_checkout()
    assert not Order.objects.exists()
    assert not Job.objects.exists()

    with transaction.atomic():
        Order.objects.create(number=2)
        result = tasks.record.enqueue("committed")
    assert Order.objects.get().number == 2
    assert str(Job.objects.get().id) == result.id


def test_enqueue_on_commit_runs_only_if_the_transaction_commits(run_worker):
    with pytest.raises(RuntimeError, match="the view failed"):
        failing_checkout()
    with transaction.atomic():
        transaction.on_commit(partial(tasks.record.enqueue, "after commit"))
        assert not Job.objects.exists()
    run_worker()
    assert executed_labels() == ["after commit"]


@requires_postgres  # On SQLite, the claim would wait for the open transaction.
def test_a_worker_does_not_see_uncommitted_jobs(run_worker):
    with transaction.atomic():
        result = tasks.record.enqueue("pending")
        run_worker()
        assert not Execution.objects.exists()
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
