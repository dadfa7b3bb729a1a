"""Steps and hooks of the named jobs in tests/settings.py JOBS.

Each appends to ``workspace["trace"]``, so a test reads the order in which
they ran from the saved workspace. Steps also write an Execution row.
"""

import os
import time

from tests.testapp.models import Execution

# Set in a worker subprocess: step_two then blocks until the process is killed.
BLOCK_IN_STEP_TWO = "DBQUEUE_TEST_BLOCK_IN_STEP_TWO"


def _trace(job, label):
    job.workspace.setdefault("trace", []).append(label)


def _step(job, label):
    _trace(job, label)
    Execution.objects.create(job_id=str(job.id), label=label, pid=os.getpid())
    if job.workspace.get("fail_at") == label:
        raise ValueError(f"{label} failed")


def step_one(job):
    _step(job, "step_one")
    job.workspace["total"] = job.workspace.get("start", 0) + 1


def step_two(job):
    _step(job, "step_two")
    time.sleep(job.workspace.get("sleep", 0))
    if os.environ.get(BLOCK_IN_STEP_TWO):
        time.sleep(120)
    job.workspace["total"] *= 10


def step_three(job):
    _step(job, "step_three")
    if job.workspace.get("break_workspace"):
        job.workspace["bad"] = object()


def before_step(job):
    _trace(job, "pre:" + job.next_task.rsplit(".", 1)[1])
    if job.workspace.get("fail_pre"):
        raise KeyError("pre-task hook failed")


def after_step(job):
    _trace(job, f"post:{job.state}")
    if job.workspace.get("fail_post"):
        raise RuntimeError("post-task hook failed")


def on_failure(job, exception):
    _trace(job, f"failure:{type(exception).__name__}")
    if job.workspace.pop("fail_once", False):
        del job.workspace["fail_at"]
    if job.workspace.get("fail_failure_hook"):
        raise RuntimeError("failure hook failed")


def on_create(job):
    job.workspace["created_by_pid"] = os.getpid()
    if job.workspace.get("fail_create"):
        raise ValueError("creation hook failed")
