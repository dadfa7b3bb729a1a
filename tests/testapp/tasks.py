import asyncio
import os
import time

from django.tasks import task

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
