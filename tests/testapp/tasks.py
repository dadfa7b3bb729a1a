import asyncio
import os
import time

from django.tasks import task

from dbqueue_embedded import task_options

from .models import Execution


@task
def noop() -> None:
    pass


@task()
def add(a: int, b: int) -> int:
    return a + b


@task
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@task(takes_context=True)
def record(context, label: str = "") -> str:
    Execution.objects.create(
        job_id=context.task_result.id, label=label, pid=os.getpid()
    )
    return context.task_result.id


@task
def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task
def fail_value_error(message: str = "boom") -> None:
    raise ValueError(message)


@task
def fail_system_exit() -> None:
    raise SystemExit(3)


@task
def return_unserializable():
    return lambda: None


@task(takes_context=True)
def context_info(context) -> dict:
    return {"id": context.task_result.id, "attempt": context.attempt}


@task
def fail_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


@task
async def async_fail() -> None:
    await asyncio.sleep(0)
    raise RuntimeError("async boom")


NOT_A_TASK = "a module attribute that is not a task"


@task
async def async_sleep_for(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@task_options(
    max_attempts=3, retry_on=(ConnectionError,), retry_delay=0.05, retry_max_delay=0.1
)
@task(takes_context=True)
def flaky(context, failures: int, error: str = "ConnectionError") -> int:
    """Fail the first ``failures`` attempts with ``error``, then succeed."""
    if context.attempt <= failures:
        raise {"ConnectionError": ConnectionError, "ValueError": ValueError}[error](
            f"attempt {context.attempt}"
        )
    return context.attempt


@task_options(timeout=0.3)
@task
async def async_sleep_with_timeout(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@task_options(timeout=0.3)
@task(takes_context=True)
def sleep_with_timeout(context, seconds: float) -> bool:
    """Sleep past the timeout without looking; report whether it saw the stop."""
    time.sleep(seconds)
    Execution.objects.create(
        job_id=context.task_result.id, label="returned", pid=os.getpid()
    )
    return context.cancel_requested


@task(takes_context=True)
def wait_for_cancel(context, seconds: float) -> str:
    """Run up to ``seconds``, stopping as soon as cancellation is requested."""
    Execution.objects.create(job_id=context.task_result.id, pid=os.getpid())
    context.wait_for_cancel(seconds)
    context.raise_if_cancelled()
    return "not cancelled"


@task
async def async_wait_for_cancel(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "not cancelled"


@task(takes_context=True)
def record_then_sleep(context, seconds: float) -> dict:
    """Record this execution, then take ``seconds``; return which attempt it was."""
    Execution.objects.create(
        job_id=context.task_result.id, label=str(context.attempt), pid=os.getpid()
    )
    time.sleep(seconds)
    return {"attempt": context.attempt, "worker_id": context.task_result.worker_ids[-1]}


@task_options(max_attempts=2, retry_delay=30, retry_max_delay=60)
@task
def fail_then_wait() -> None:
    raise ConnectionError("try again later")


@task_options(unique_key="invoice:{invoice_id}")
@task
def send_invoice(invoice_id: int, copy: bool = False) -> int:
    return invoice_id


@task_options(unique_key="report:{name}", unique_until="finished")
@task
def build_report(name: str, seconds: float = 0) -> str:
    time.sleep(seconds)
    return name


def record_run(context, seconds: float) -> None:
    """Record when this job's run began and ended, as the task saw it."""
    job_id = context.task_result.id
    Execution.objects.create(job_id=job_id, label="start", pid=os.getpid())
    time.sleep(seconds)
    Execution.objects.create(job_id=job_id, label="end", pid=os.getpid())


@task_options(concurrency_key="account:{account_id}")
@task(takes_context=True)
def charge_account(context, account_id: int, seconds: float = 0) -> int:
    record_run(context, seconds)
    return account_id


@task_options(concurrency_key="sync:{account_id}", concurrency_limit=2)
@task(takes_context=True)
def sync_account(context, account_id: int, seconds: float = 0) -> int:
    record_run(context, seconds)
    return account_id


@task_options(concurrency_key="export:{name}", on_conflict="discard")
@task
def export_once(name: str, seconds: float = 0) -> str:
    time.sleep(seconds)
    return name


@task(takes_context=True)
def report_steps(context, steps: int, pause: float) -> int:
    """Report progress after each of ``steps`` steps of ``pause`` seconds."""
    for step in range(1, steps + 1):
        time.sleep(pause)
        context.report_progress(step, steps, f"step {step} of {steps}")
    return steps


@task(takes_context=True)
async def async_report_steps(context, steps: int, pause: float) -> int:
    for step in range(1, steps + 1):
        await asyncio.sleep(pause)
        await context.areport_progress(step, steps, f"step {step} of {steps}")
    return steps


@task(takes_context=True)
def report_quickly_then_wait(context, reports: int, seconds: float) -> str:
    """Report ``reports`` times at once, then run ``seconds`` (or until
    cancelled) without reporting."""
    for done in range(1, reports + 1):
        context.report_progress(done, reports, "counted")
    context.wait_for_cancel(seconds)
    context.raise_if_cancelled()
    return "done"


BAD_PROGRESS = [
    (-1, None, ""),
    (3, 2, ""),
    (1, -2, ""),
    (1.5, None, ""),
    ("1", None, ""),
    (True, None, ""),
    (1, 2.0, ""),
    (1, None, 3),
    (1, None, "x" * 201),
]


@task(takes_context=True)
def report_bad_progress(context) -> list[str]:
    """Make each report of BAD_PROGRESS; return the errors they raised."""
    errors = []
    for done, total, message in BAD_PROGRESS:
        try:
            context.report_progress(done, total, message)
        except (TypeError, ValueError) as exc:
            errors.append(type(exc).__name__)
    return errors


@task_options(max_attempts=2, retry_on=(ConnectionError,), retry_delay=0.05)
@task(takes_context=True)
def report_then_fail_once(context) -> int:
    """Report progress and fail the first attempt; report nothing the second."""
    if context.attempt == 1:
        context.report_progress(1, 2, "first attempt")
        raise ConnectionError("first attempt fails")
    return context.attempt


@task
def return_nul() -> str:
    return "a\x00b"


@task
def fail_with_nul() -> None:
    raise ValueError("bad byte \x00 here")
