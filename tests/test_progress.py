"""Progress: tasks report it through their context, results show it."""

import asyncio
import dataclasses
import pickle
import threading

import django
import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.tasks import TaskResult, TaskResultStatus, default_task_backend
from django.utils import timezone

from dbqueue_embedded import JobContext, Progress, QueueTaskResult, payloads, store
from dbqueue_embedded.context import ProgressReporter
from dbqueue_embedded.models import Job
from dbqueue_embedded.runtime.outcomes import released_outcome
from dbqueue_embedded.selectors import parse_selectors
from tests.conftest import finished, register_process, wait_for
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def progress_of(result_id: str) -> Progress | None:
    return default_task_backend.get_result(result_id).progress


def test_progress_shows_while_the_task_runs_and_stays_once_it_finished(
    background_worker,
):
    background_worker()
    result = tasks.report_steps.enqueue(steps=6, pause=0.3)

    midway = wait_for(
        lambda: (progress := progress_of(result.id)) and progress.done < 6 and progress
    )
    assert midway.total == 6
    assert midway.message == f"step {midway.done} of 6"
    assert 0 < midway.fraction < 1
    assert midway.updated_at <= timezone.now()
    # refresh() brings the progress along with Django's own fields.
    wait_for(lambda: result.refresh() or result.progress is not None)
    assert result.status == TaskResultStatus.RUNNING
    assert result.progress.done >= midway.done

    wait_for(lambda: finished(result))
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.progress.done == result.progress.total == 6
    assert result.progress.message == "step 6 of 6"
    assert (result.progress.fraction, result.progress.percent) == (1.0, 100)
    assert result.progress.updated_at <= result.finished_at
    assert progress_of(result.id) == result.progress


def test_async_results_show_progress_too(background_worker):
    background_worker()
    result = tasks.report_steps.enqueue(steps=4, pause=0.2)

    async def progress_seen() -> tuple[Progress | None, Progress | None]:
        try:
            fetched = await default_task_backend.aget_result(result.id)
            await result.arefresh()
            return fetched.progress, result.progress
        finally:
            # The thread Django's async calls use keeps its connection open,
            # which would keep the test database from being dropped.
            await sync_to_async(connections.close_all)()

    midway = wait_for(lambda: all(seen := asyncio.run(progress_seen())) and seen)
    assert midway[0].total == midway[1].total == 4
    wait_for(lambda: finished(result))
    assert asyncio.run(progress_seen())[1].done == 4


def test_an_async_task_reports_progress_with_the_async_twin(run_worker):
    result = tasks.async_report_steps.enqueue(steps=3, pause=0.01)
    run_worker()
    result.refresh()
    assert result.return_value == 3
    assert (result.progress.done, result.progress.total) == (3, 3)
    assert result.progress.message == "step 3 of 3"


def test_the_last_of_many_quick_reports_is_stored_when_the_task_returns(run_worker):
    result = tasks.report_steps.enqueue(steps=500, pause=0)
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.progress.done == 500
    assert result.progress.message == "step 500 of 500"


def test_a_held_back_report_is_stored_while_the_task_goes_quiet(background_worker):
    background_worker(heartbeat_interval=0.2, process_dead_after=5)
    result = tasks.report_quickly_then_wait.enqueue(reports=1000, seconds=30)
    # The task reports 1000 times at once, then runs on without reporting:
    # the last report is written once the write interval is over.
    wait_for(lambda: getattr(progress_of(result.id), "done", None) == 1000)
    assert Job.objects.get(id=result.id).status == TaskResultStatus.RUNNING

    default_task_backend.cancel(result.id)
    wait_for(lambda: finished(result))
    assert result.status == TaskResultStatus.FAILED
    assert result.progress.done == 1000  # a failed job keeps its progress


def test_reports_are_passed_on_at_most_once_per_interval_and_the_last_is_kept():
    sent: list[Progress] = []
    reporter = ProgressReporter(
        sent.append,
        call_later=lambda delay, send: threading.Timer(delay, send).start(),
        # Long enough for the loop below on a slow machine.
        interval=1.0,
    )
    context = JobContext(task_result=tasks.noop.enqueue(), progress_reporter=reporter)
    for done in range(1, 1001):
        context.report_progress(done, 1000)
    wait_for(lambda: sent[-1].done == 1000)
    # The first report at once, the last once the interval was over.
    assert [progress.done for progress in sent] == [1, 1000]
    assert reporter.close().done == 1000
    context.report_progress(1000, 1000, "after the end")
    assert reporter.close().message == ""  # closed: reports are ignored


def test_a_retried_attempt_starts_without_the_previous_attempt_s_progress(
    background_worker,
):
    background_worker()
    result = tasks.report_then_fail_once.enqueue()
    wait_for(lambda: finished(result))
    assert result.return_value == 2
    assert result.progress is None


def test_bad_progress_raises_a_clear_error_and_stores_nothing(run_worker):
    result = tasks.report_bad_progress.enqueue()
    run_worker()
    result.refresh()
    assert result.return_value == [
        "ValueError",
        "ValueError",
        "ValueError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        "ValueError",
    ]
    assert result.progress is None
    assert Job.objects.get(id=result.id).progress is None


@pytest.mark.parametrize(
    ("done", "total", "message", "error"),
    [
        (-1, None, "", "done and total must not be negative (done=-1, total=None)."),
        (3, 2, "", "done (3) must not be more than total (2)."),
        (1.5, None, "", "done must be an int, not float."),
        (True, None, "", "done must be an int, not bool."),
        (1, "2", "", "total must be an int, not str."),
        (1, None, None, "message must be a str, not NoneType."),
        # PostgreSQL's JSON cannot store it.
        (1, None, "a\x00b", "message must not contain a NUL character (\\x00)."),
        (
            1,
            None,
            "x" * 201,
            "message is 201 characters long; the most a progress message may "
            "have is 200.",
        ),
    ],
)
def test_each_bad_report_says_what_is_wrong(done, total, message, error):
    context = JobContext(task_result=tasks.noop.enqueue())
    with pytest.raises((TypeError, ValueError)) as raised:
        context.report_progress(done, total, message)
    assert str(raised.value) == error
    assert context.task_result.progress is None


def test_percent_is_exact_and_rounded_down():
    at = timezone.now()
    assert [
        Progress(done=done, total=total, message="", updated_at=at).percent
        for done, total in [(29, 100), (57, 100), (2, 3), (0, 0), (5, None)]
    ] == [29, 57, 66, 100, None]


def test_a_context_made_outside_the_runtime_keeps_its_progress_in_memory():
    context = JobContext(task_result=tasks.noop.enqueue())
    context.report_progress(0, 0, "nothing to do")
    assert context.task_result.progress.fraction == 1.0
    context.report_progress(7)
    assert context.task_result.progress.total is None
    assert context.task_result.progress.fraction is None
    assert Job.objects.get(id=context.task_result.id).progress is None


def test_a_lost_claim_cannot_write_progress():
    result = tasks.add.enqueue(1, 2)
    claim = dict(
        using="default",
        backend="default",
        selectors=parse_selectors(["*"]),
        limit=1,
    )
    register_process("slow-worker")
    [first] = store.claim_batch(worker_id="slow-worker", **claim)

    def update(job, done):
        progress = Progress(done=done, total=10, message="", updated_at=timezone.now())
        return store.ProgressUpdate(
            job_id=job.id,
            claim_token=job.claim_token,
            progress_json=payloads.encode(progress.as_json()),
        )

    assert store.record_progress([update(first, 3)], using="default") == {first.id}
    assert progress_of(result.id).done == 3
    # The claim is taken away (released) and the job claimed again elsewhere.
    store.finish_claims([released_outcome(first, "test release")], using="default")
    register_process("fresh-worker")
    [second] = store.claim_batch(worker_id="fresh-worker", **claim)
    assert progress_of(result.id) is None  # a new attempt starts without

    assert store.record_progress([update(first, 9)], using="default") == set()
    assert progress_of(result.id) is None
    assert store.record_progress([update(second, 1)], using="default") == {second.id}
    assert progress_of(result.id).done == 1


def test_a_result_with_progress_is_still_django_s_task_result(run_worker):
    result = tasks.report_steps.enqueue(steps=2, pause=0)
    assert isinstance(result, TaskResult)
    assert isinstance(result, QueueTaskResult)
    assert dataclasses.replace(result) == result
    run_worker()
    fetched = tasks.report_steps.get_result(result.id)
    result.refresh()
    assert fetched == result
    assert fetched.progress == result.progress
    if django.VERSION >= (6, 1):  # results pickle from Django 6.1
        assert pickle.loads(pickle.dumps(fetched)).progress == fetched.progress
