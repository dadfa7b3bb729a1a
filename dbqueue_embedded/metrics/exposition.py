"""The metrics in Prometheus' text format (version 0.0.4).

Queues and processes are read from the database at each scrape, so they are
the same whichever process serves it. Counters come from each live
process's row (see ``counters``), one series per process.
"""

from collections.abc import Iterable, Iterator
from datetime import timedelta

from django.utils import timezone

from ..backend import DatabaseBackend
from ..models import WorkerProcess
from ..store.queues import queue_stats
from .counters import DURATION_BUCKETS


def render_metrics(backends: Iterable[DatabaseBackend]) -> str:
    lines: list[str] = []
    families: dict[str, list[str]] = {}
    for backend in backends:
        for name, sample in _samples(backend):
            families.setdefault(name, []).append(sample)
    for name, (kind, description) in FAMILIES.items():
        lines.append(f"# HELP {name} {description}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(families.get(name, []))
    return "\n".join(lines) + "\n"


FAMILIES = {
    "dbqueue_jobs_enqueued_total": (
        "counter",
        "Jobs enqueued, by the process that enqueued them.",
    ),
    "dbqueue_jobs_finished_total": (
        "counter",
        "Attempts that ended, by status (SUCCESSFUL, FAILED; FAILED includes "
        "attempts that will be retried), by the process that ran them.",
    ),
    "dbqueue_job_duration_seconds": (
        "histogram",
        "How long attempts ran, by the process that ran them.",
    ),
    "dbqueue_queue_jobs": (
        "gauge",
        "Jobs in a queue by state: ready, scheduled, running, blocked.",
    ),
    "dbqueue_queue_latency_seconds": (
        "gauge",
        "How long the oldest job that may run now has waited.",
    ),
    "dbqueue_queue_paused": ("gauge", "1 if the queue is paused."),
    "dbqueue_process_up": (
        "gauge",
        "1 while the process's heartbeat is fresh, 0 once others presume it dead.",
    ),
    "dbqueue_process_heartbeat_age_seconds": (
        "gauge",
        "Seconds since the process's last heartbeat.",
    ),
    "dbqueue_process_loop_restarts_total": (
        "counter",
        "Times a part of the process's runtime crashed and was restarted.",
    ),
}


def _samples(backend: DatabaseBackend) -> Iterator[tuple[str, str]]:
    alias = backend.alias
    for stats in queue_stats(using=backend.database, backend=alias):
        queue = {"backend": alias, "queue": stats.name}
        for state in ("ready", "scheduled", "running", "blocked"):
            yield _sample(
                "dbqueue_queue_jobs", {**queue, "state": state}, getattr(stats, state)
            )
        yield _sample(
            "dbqueue_queue_latency_seconds", queue, stats.latency.total_seconds()
        )
        yield _sample("dbqueue_queue_paused", queue, int(stats.paused))

    now = timezone.now()
    processes = WorkerProcess.objects.using(backend.database).filter(backend=alias)
    for process in processes.order_by("id"):
        age = max(timedelta(0), now - process.last_heartbeat_at)
        labels = {"process": process.id, "backend": alias}
        yield _sample(
            "dbqueue_process_up",
            {**labels, "mode": process.mode, "hostname": process.hostname},
            int(age <= process.dead_after),
        )
        yield _sample(
            "dbqueue_process_heartbeat_age_seconds", labels, age.total_seconds()
        )
        for loop, state in sorted(process.loops.items()):
            yield _sample(
                "dbqueue_process_loop_restarts_total",
                {**labels, "loop": loop},
                state.get("restarts", 0),
            )
        yield from _counter_samples(process.id, process.metrics)


def _counter_samples(process: str, metrics: dict) -> Iterator[tuple[str, str]]:
    for backend, queue, task, count in metrics.get("enqueued", []):
        labels = {"process": process, "backend": backend, "queue": queue, "task": task}
        yield _sample("dbqueue_jobs_enqueued_total", labels, count)
    for backend, queue, task, status, count, seconds, *buckets in metrics.get(
        "finished", []
    ):
        labels = {
            "process": process,
            "backend": backend,
            "queue": queue,
            "task": task,
            "status": status,
        }
        yield _sample("dbqueue_jobs_finished_total", labels, count)
        histogram = "dbqueue_job_duration_seconds"
        cumulative = 0
        for bound, in_bucket in zip(DURATION_BUCKETS, buckets, strict=True):
            cumulative += in_bucket
            yield (
                histogram,
                _line(
                    f"{histogram}_bucket", {**labels, "le": _number(bound)}, cumulative
                ),
            )
        yield histogram, _line(f"{histogram}_bucket", {**labels, "le": "+Inf"}, count)
        yield histogram, _line(f"{histogram}_sum", labels, seconds)
        yield histogram, _line(f"{histogram}_count", labels, count)


def _sample(name: str, labels: dict[str, str], value: float) -> tuple[str, str]:
    return name, _line(name, labels, value)


def _line(name: str, labels: dict[str, str], value: float) -> str:
    rendered = ",".join(f'{key}="{_escape(str(v))}"' for key, v in labels.items())
    return f"{name}{{{rendered}}} {_number(value)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)
