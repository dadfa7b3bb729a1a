import os
import time
from typing import Any

from django.db import InterfaceError, OperationalError, connection
from django.tasks import TaskContext, task

from .models import Execution


@task(takes_context=True)
def record_and_sleep(context: TaskContext, seconds: float) -> dict[str, Any]:
    """Record this execution, sleep, and say which attempt and claim ran it.

    The return value lets the run check that a job's outcome came from its
    latest claim: a write from an older claim would carry an older attempt.
    """
    result = context.task_result
    execution = {
        "job_id": result.id,
        "attempt": context.attempt,
        "worker_id": result.worker_ids[-1],
        "pid": os.getpid(),
    }
    try:
        Execution.objects.create(**execution)
    except (OperationalError, InterfaceError):
        # The run terminates database backends: a connection may die under
        # the task. Reconnect once, so the task's own write does not fail
        # the job; the queue's writes must survive such cuts on their own.
        connection.close()
        Execution.objects.create(**execution)
    time.sleep(seconds)
    return {"attempt": context.attempt, "worker_id": result.worker_ids[-1]}
