"""What this process enqueued and ran, counted in memory.

Each runtime writes its process's counts to its ``WorkerProcess`` row with
every heartbeat, so the metrics endpoint, served by any process, reports
every live process: one series per process, as Prometheus expects of
counters that restart from zero when their process does.
"""

import bisect
import threading
from collections.abc import Mapping
from typing import Any

# Upper bounds, in seconds, of the execution time histogram's buckets.
DURATION_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
)


class JobCounters:
    """Counts by (backend, queue, task): enqueued; finished by status, with
    the execution time histogram."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._enqueued: dict[tuple[str, str, str], int] = {}
        # (backend, queue, task, status) -> [count, seconds, bucket counts...]
        self._finished: dict[tuple[str, str, str, str], list[float]] = {}

    def count_enqueued(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        """Add jobs enqueued, by (backend, queue, task)."""
        with self._lock:
            for key, jobs in counts.items():
                self._enqueued[key] = self._enqueued.get(key, 0) + jobs

    def count_finished(
        self, backend: str, queue: str, task: str, status: str, seconds: float
    ) -> None:
        """Add an attempt that ended (SUCCESSFUL or FAILED) after ``seconds``."""
        key = (backend, queue, task, status)
        with self._lock:
            row = self._finished.get(key)
            if row is None:
                row = self._finished[key] = [0, 0.0] + [0] * len(DURATION_BUCKETS)
            row[0] += 1
            row[1] += seconds
            bucket = bisect.bisect_left(DURATION_BUCKETS, seconds)
            if bucket < len(DURATION_BUCKETS):
                row[2 + bucket] += 1

    def snapshot(self, backend: str) -> dict[str, Any]:
        """The counts of ``backend`` as JSON, for the row of its runtime in
        this process (a process runs one runtime per backend)."""
        with self._lock:
            return {
                "enqueued": [
                    [*key, count]
                    for key, count in self._enqueued.items()
                    if key[0] == backend
                ],
                "finished": [
                    [*key, *row]
                    for key, row in self._finished.items()
                    if key[0] == backend
                ],
            }


# This process's counters.
job_counters = JobCounters()
