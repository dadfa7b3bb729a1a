"""The example shop on the benchmark's database, served by the benchmark.

BENCH_CONCURRENCY sets the queue's concurrency (default: the embedded one).
"""

import os

from example.settings import *  # noqa: F403
from example.settings import INSTALLED_APPS

from benchmarks.settings import DATABASES  # noqa: F401

INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks.benchapp"]
TASKS = {
    "default": {
        "BACKEND": "dbqueue_embedded.backend.DatabaseBackend",
        "QUEUES": [],
        "OPTIONS": (
            {"concurrency": int(os.environ["BENCH_CONCURRENCY"])}
            if os.environ.get("BENCH_CONCURRENCY")
            else {}
        ),
    }
}
DEBUG = False
# As dbqueue_worker at its default verbosity: Django's one INFO line per job
# start and finish is not written, and not formatted either.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.tasks": {"level": "WARNING"}},
}
