"""Unique jobs: one job per key while one waits (or, if asked, runs)."""

import threading

import pytest
from django.db import connections, transaction
from django.tasks import TaskResultStatus
from django.tasks.exceptions import InvalidTask

from dbqueue_embedded import task_options
from dbqueue_embedded.models import Job
from tests.conftest import finished, wait_for
from tests.testapp.tasks import build_report, send_invoice, sleep_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_duplicate_returns_the_waiting_job(run_worker):
    first = send_invoice.enqueue(7)
    duplicate = send_invoice.enqueue(invoice_id=7, copy=True)
    other = send_invoice.enqueue(8)
    assert duplicate.id == first.id
    assert duplicate.args == [7]  # the waiting job's arguments
    assert other.id != first.id
    assert Job.objects.count() == 2

    run_worker()
    assert finished(first)
    # Once it ran, the key is free again.
    again = send_invoice.enqueue(7)
    assert again.id != first.id


def test_a_job_unique_until_started_lets_a_duplicate_in_while_it_runs(
    background_worker,
):
    slow = task_options(unique_key="k:{seconds}")(sleep_for)
    running = slow.enqueue(0.5)
    background_worker()
    wait_for(lambda: Job.objects.filter(status="RUNNING").exists())
    assert slow.enqueue(0.5).id != running.id


def test_a_job_unique_until_finished_holds_its_key_while_it_runs(background_worker):
    running = build_report.enqueue("sales", 0.5)
    background_worker()
    wait_for(lambda: Job.objects.filter(status="RUNNING").exists())
    assert build_report.enqueue("sales").id == running.id
    wait_for(lambda: finished(running))
    assert running.status == TaskResultStatus.SUCCESSFUL
    assert build_report.enqueue("sales").id != running.id


def test_bulk_enqueue_dedupes_within_and_against_the_table():
    backend = send_invoice.get_backend()
    waiting = send_invoice.enqueue(1)
    results = backend.bulk_enqueue(
        [(send_invoice, [1], {}), (send_invoice, [2], {}), (send_invoice, [2], {})]
    )
    assert results[0].id == waiting.id
    assert results[1].id == results[2].id != waiting.id
    assert Job.objects.count() == 2


def test_concurrent_duplicates_make_one_job():
    ids = []
    barrier = threading.Barrier(4)

    def enqueue():
        barrier.wait()
        try:
            ids.append(send_invoice.enqueue(42).id)
        finally:
            connections.close_all()  # this thread's own connection

    threads = [threading.Thread(target=enqueue) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    assert Job.objects.count() == 1


def test_a_rolled_back_enqueue_leaves_the_key_free():
    def enqueue_then_roll_back():
        with transaction.atomic():
            send_invoice.enqueue(5)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        enqueue_then_roll_back()
    assert not Job.objects.exists()
    assert send_invoice.enqueue(5).status == TaskResultStatus.READY


def test_invalid_unique_options_are_rejected_at_import():
    with pytest.raises(InvalidTask, match="names 'order', which is not a parameter"):
        task_options(unique_key="order:{order}")(send_invoice)
    with pytest.raises(InvalidTask, match="not a valid template"):
        task_options(unique_key="order:{invoice_id")(send_invoice)
    with pytest.raises(InvalidTask, match="unique_until must be"):
        task_options(unique_until="later")(send_invoice)


def test_a_key_function_and_a_bad_key():
    keyed = task_options(unique_key=lambda invoice_id, copy=False: f"i{invoice_id}")(
        send_invoice
    )
    assert keyed.enqueue(3).id == keyed.enqueue(3, copy=True).id
    too_long = task_options(unique_key=lambda invoice_id, copy=False: "k" * 300)(
        send_invoice
    )
    with pytest.raises(ValueError, match="longer than 255"):
        too_long.enqueue(1)
    assert Job.objects.count() == 1


def test_a_blocked_unique_job_still_dedupes():
    # One invoice at a time for the whole shop: the second waits, BLOCKED.
    one_at_a_time = task_options(concurrency_key="invoices")(send_invoice)
    one_at_a_time.enqueue(1)
    blocked = one_at_a_time.enqueue(2)
    assert Job.objects.get(id=blocked.id).status == "BLOCKED"
    assert one_at_a_time.enqueue(2).id == blocked.id
    assert Job.objects.count() == 2
