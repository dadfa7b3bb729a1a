"""A named multi-step job (settings.JOBS): a supplier's catalogue import.

Each step runs as its own claim and reads what the steps before it left in
``job.workspace``; the jobs page shows the workspace grow step by step.
"""

import random
import time

from django.utils import timezone


def download_catalogue(job) -> None:
    time.sleep(1)
    job.workspace["rows"] = random.randint(100, 999)


def validate_rows(job) -> None:
    time.sleep(1)
    job.workspace["valid"] = job.workspace["rows"] - random.randint(0, 9)


def publish_products(job) -> None:
    time.sleep(1)
    job.workspace["published_at"] = timezone.now().isoformat(timespec="seconds")


def note_supplier(job) -> None:
    """Creation hook: runs in the view's process before the job is saved."""
    job.workspace.setdefault("supplier", "ACME")


def note_step(job) -> None:
    """Post-task hook: runs after every step, whatever happened."""
    job.workspace["steps_done"] = job.workspace.get("steps_done", 0) + 1
