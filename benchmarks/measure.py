"""Measure one database and print the results as one JSON line.

Run by ``benchmarks/run.py``, once per database, with BENCH_DATABASE and
BENCH_DB_NAME set. Every figure is the median of ROUNDS rounds.
"""

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import django

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SINGLE_JOBS = 1000
BULK_JOBS = 20_000
DRAIN_JOBS = 10_000
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    results = {
        **measure_single_enqueue(),
        "bulk_enqueue": median(measure_bulk_enqueue),
        "drain": median(measure_drain),
    }
    print(json.dumps(results))


def median(measure) -> float:
    return statistics.median(measure() for _ in range(ROUNDS))


def clear() -> None:
    from django.db import connection

    from benchmarks.benchapp.models import PlainJob
    from dbqueue_embedded.models import Job

    Job.objects.all().delete()
    PlainJob.objects.all().delete()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE dbqueue_embedded_job")
            cursor.execute("VACUUM ANALYZE benchapp_plainjob")


def measure_single_enqueue() -> dict[str, float]:
    """enqueue() one job at a time, against the ORM's create() of the same row.

    Rounds alternate between the two so that both see the same machine.
    """
    from django.utils import timezone

    from benchmarks.benchapp.models import PlainJob
    from benchmarks.tasks import noop

    enqueue_rates, create_rates = [], []
    for _ in range(ROUNDS):
        clear()
        started = time.perf_counter()
        for _ in range(SINGLE_JOBS):
            noop.enqueue()
        enqueue_rates.append(SINGLE_JOBS / (time.perf_counter() - started))
        clear()
        started = time.perf_counter()
        for _ in range(SINGLE_JOBS):
            now = timezone.now()
            PlainJob.objects.create(
                id=uuid.uuid4(),
                backend="default",
                queue_name="default",
                task_path=noop.module_path,
                priority=0,
                available_at=now,
                enqueued_at=now,
            )
        create_rates.append(SINGLE_JOBS / (time.perf_counter() - started))
    enqueue, create = statistics.median(enqueue_rates), statistics.median(create_rates)
    return {"single_enqueue": enqueue, "orm_create": create, "ratio": enqueue / create}


def measure_bulk_enqueue() -> float:
    from django.tasks import default_task_backend

    from benchmarks.tasks import noop

    clear()
    calls = [(noop, (), {})] * BULK_JOBS
    started = time.perf_counter()
    default_task_backend.bulk_enqueue(calls)
    return BULK_JOBS / (time.perf_counter() - started)


def measure_drain() -> float:
    """Drain no-op jobs with `manage.py dbqueue_worker --burst` at default settings.

    Timed from the first job's start to the last job's finish, as recorded in
    the table, so that Python and Django start-up do not count.
    """
    from django.db.models import Max, Min
    from django.tasks import default_task_backend

    from benchmarks.tasks import noop
    from dbqueue_embedded.models import Job

    clear()
    default_task_backend.bulk_enqueue([(noop, (), {})] * DRAIN_JOBS)
    subprocess.run(
        [sys.executable, "-m", "django", "dbqueue_worker", "--burst", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    span = Job.objects.filter(status="SUCCESSFUL").aggregate(
        first=Min("started_at"), last=Max("finished_at")
    )
    finished = Job.objects.filter(status="SUCCESSFUL").count()
    if finished != DRAIN_JOBS:
        raise RuntimeError(f"Only {finished} of {DRAIN_JOBS} jobs succeeded.")
    return DRAIN_JOBS / (span["last"] - span["first"]).total_seconds()


if __name__ == "__main__":
    main()
