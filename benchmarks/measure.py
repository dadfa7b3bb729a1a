"""Measure one database and print the results as one JSON line.

Run by ``benchmarks/run.py``, once per database, with BENCH_DATABASE and
BENCH_DB_NAME set. Rates are the median of ROUNDS rounds; latencies are
percentiles over every sample.
"""

import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import django

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SINGLE_JOBS = 1000
BULK_JOBS = 20_000
DRAIN_JOBS = 10_000
DRAIN_ROUNDS = 7
# Jobs scheduled for the future, and finished jobs, in the crowded drain.
# Both have a run_after, which the drained jobs do not.
CROWD = 100_000
# One job every PICKUP_GAP seconds. The gap does not divide the poll interval
# (1 s), so that enqueues fall at every phase of the poll cycle in turn (19 ms
# on from one cycle to the next, 1 ms apart over 19 cycles): with a gap that
# divides it, the median depends on where the first enqueue happens to fall.
PICKUP_JOBS = 1000
PICKUP_GAP = 0.019
# Requests per second: the example page costs about 10 ms of CPU, so this
# keeps the server's process a quarter busy, like a healthy web process.
HTTP_RATE = 25
HTTP_SECONDS = 24
IO_JOB_SECONDS = 0.02
ROOT = Path(__file__).resolve().parent.parent
SERVER_PORT = 8765


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    results = {
        **measure_single_enqueue(),
        "bulk_enqueue": median(measure_bulk_enqueue),
        **measure_drains(),
        **measure_crowded_drain(),
        **measure_pickup_latency(),
        **measure_http_latency(),
        "extra_rss_mb": measure_extra_rss(),
    }
    print(json.dumps(results))


def median(measure) -> float:
    return statistics.median(measure() for _ in range(ROUNDS))


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def clear() -> None:
    from django.db import connection

    from benchmarks.benchapp.models import PlainJob
    from dbqueue_embedded.models import Job, WorkerProcess

    Job.objects.all().delete()
    PlainJob.objects.all().delete()
    WorkerProcess.objects.all().delete()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE dbqueue_embedded_job")
            cursor.execute("VACUUM ANALYZE benchapp_plainjob")


# -- enqueue ----------------------------------------------------------------


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


# -- draining ---------------------------------------------------------------


def drain_rate() -> float:
    """Jobs per second from the first job's start to the last job's finish.

    Timed from the table, so that process start-up does not count.
    """
    from django.db.models import Max, Min

    from dbqueue_embedded.models import Job

    done = Job.objects.filter(status="SUCCESSFUL", run_after__isnull=True)
    count = done.count()
    if count != DRAIN_JOBS:
        raise RuntimeError(f"Only {count} of {DRAIN_JOBS} jobs succeeded.")
    span = done.aggregate(first=Min("started_at"), last=Max("finished_at"))
    return count / (span["last"] - span["first"]).total_seconds()


def enqueue_no_ops(count: int) -> None:
    from django.tasks import default_task_backend

    from benchmarks.tasks import noop

    default_task_backend.bulk_enqueue([(noop, (), {})] * count)


def measure_drains() -> dict[str, float]:
    """Drain throughput of the standalone worker and of the embedded runtime.

    Rounds alternate between the two, so that both see the same machine;
    at least DRAIN_ROUNDS, as the comparison is finer than the noise of
    three rounds.
    """
    standalone, embedded = [], []
    for _ in range(max(ROUNDS, DRAIN_ROUNDS)):
        standalone.append(measure_drain())
        embedded.append(measure_embedded_drain())
    drain = statistics.median(standalone)
    drain_embedded = statistics.median(embedded)
    return {
        "drain": drain,
        "drain_embedded": drain_embedded,
        "drain_embedded_ratio": drain_embedded / drain,
    }


def measure_crowded_drain() -> dict[str, float]:
    """The standalone drain with CROWD jobs scheduled for tomorrow and CROWD
    finished jobs in the table, against the same drain without them.

    Rounds alternate between the two: for the plain rounds the crowd is moved
    to another backend, whose rows the claim's index keeps apart, while the
    table keeps its size.
    """
    from django.db import connection
    from django.tasks import default_task_backend
    from django.utils import timezone

    from benchmarks.tasks import noop
    from dbqueue_embedded.models import Job

    clear()
    now = timezone.now()
    tomorrow, yesterday = (
        noop.using(run_after=now + timedelta(days=d)) for d in (1, -1)
    )
    default_task_backend.bulk_enqueue([(tomorrow, (), {})] * CROWD)
    default_task_backend.bulk_enqueue([(yesterday, (), {})] * CROWD)
    Job.objects.filter(run_after__lt=now).update(
        status="SUCCESSFUL", finished_at=now - timedelta(hours=1)
    )
    crowd = Job.objects.filter(run_after__isnull=False)
    plain, crowded = [], []
    for _ in range(max(ROUNDS, DRAIN_ROUNDS)):
        for backend, rates in (("parked", plain), ("default", crowded)):
            crowd.update(backend=backend)
            Job.objects.filter(run_after__isnull=True).delete()
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("VACUUM ANALYZE dbqueue_embedded_job")
            with worker_process():
                enqueue_no_ops(DRAIN_JOBS)
                wait_until_drained()
            rates.append(drain_rate())
    return {
        "drain_uncrowded": statistics.median(plain),
        "drain_crowded": statistics.median(crowded),
        "drain_crowded_ratio": statistics.median(crowded) / statistics.median(plain),
    }


def measure_drain() -> float:
    """Drain no-op jobs with `manage.py dbqueue_worker` at default settings.

    The worker is up before the jobs arrive, as the server is in
    measure_embedded_drain(): both are timed from the same start.
    """
    clear()
    with worker_process():
        enqueue_no_ops(DRAIN_JOBS)
        wait_until_drained()
    return drain_rate()


def measure_embedded_drain() -> float:
    """Drain no-op jobs with the runtime embedded in uvicorn.

    At the standalone worker's default concurrency, to compare like with like.
    """
    from dbqueue_embedded.conf import DEFAULT_CONCURRENCY

    clear()
    standalone = DEFAULT_CONCURRENCY["standalone"]
    with server("example.asgi:application", concurrency=standalone):
        enqueue_no_ops(DRAIN_JOBS)
        wait_until_drained()
    return drain_rate()


# -- latency ----------------------------------------------------------------


def measure_pickup_latency() -> dict[str, float]:
    """From enqueue() returning to the task starting, one job at a time."""
    from dbqueue_embedded.runtime.supervisor import Runtime

    results = {}
    clear()
    with worker_process():
        results["pickup_other"] = pickup_latencies()
    clear()
    runtime = Runtime(mode="embedded", web_threads=1)
    runtime.start()
    try:
        wait_until(lambda: registered_processes() == 1, 30)
        results["pickup_same"] = pickup_latencies()
    finally:
        runtime.stop()
    return {
        f"{name}_{label}": value * 1000
        for name, samples in results.items()
        for label, value in (
            ("p50", percentile(samples, 0.50)),
            ("p99", percentile(samples, 0.99)),
        )
    }


def pickup_latencies() -> list[float]:
    from benchmarks.tasks import started_at

    for _ in range(20):  # warm up: imports, connections
        started_at.enqueue()
        time.sleep(PICKUP_GAP)
    enqueued = []
    start = time.perf_counter()
    for index in range(PICKUP_JOBS):
        delay = start + index * PICKUP_GAP - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        result = started_at.enqueue()
        enqueued.append((result, time.time()))
    latencies = []
    for result, returned_at in enqueued:
        wait_until(lambda result=result: refreshed(result).is_finished, 30)
        latencies.append(result.return_value - returned_at)
    return latencies


def refreshed(result):
    result.refresh()
    return result


# -- HTTP -------------------------------------------------------------------


def measure_http_latency() -> dict[str, float]:
    """HTTP latency of the example shop's job list at a steady request rate.

    With the queue idle (as many jobs in the table, all due next year); busy
    draining I/O-bound jobs (each sleeps 20 ms), as dbqueue_embedded runs:
    its own loop in its own thread, yielding to requests in flight; the same
    without being told about requests; and the runtime on the server's event
    loop, the alternative design.
    """
    # Idle and busy, the comparison that matters, alternate for ROUNDS rounds
    # (a p99 of one 24 s run moves by a third from run to run); the two
    # alternative designs run once.
    runs = [
        ("idle", "example.asgi:application", False),
        ("busy", "example.asgi:application", True),
    ] * ROUNDS + [
        ("busy_unreported", "benchmarks.unreported_asgi:application", True),
        ("busy_shared_loop", "benchmarks.shared_loop_asgi:application", True),
    ]
    p50s: dict[str, list[float]] = {}
    p99s: dict[str, list[float]] = {}
    results = {}
    for name, app, busy in runs:
        clear()
        with server(app):
            queue_io_jobs(due=busy)
            samples, connections = steady_requests()
        p50s.setdefault(name, []).append(percentile(samples, 0.50) * 1000)
        p99s.setdefault(name, []).append(percentile(samples, 0.99) * 1000)
        if name == "busy":
            results["connections_per_process"] = connections
    for name in p50s:
        results[f"http_{name}_p50"] = statistics.median(p50s[name])
        results[f"http_{name}_p99"] = statistics.median(p99s[name])
    results["http_busy_ratio"] = results["http_busy_p99"] / results["http_idle_p99"]
    return results


def queue_io_jobs(*, due: bool) -> None:
    """Enough 20 ms jobs to keep the server's runtime busy throughout.

    Not ``due``: the same jobs, a year from now, so that the idle server
    lists its page from a table of the same size.
    """
    from django.tasks import default_task_backend

    from benchmarks.tasks import sleep_briefly
    from dbqueue_embedded.conf import DEFAULT_CONCURRENCY
    from dbqueue_embedded.models import Job

    count = int(1.5 * DEFAULT_CONCURRENCY["embedded"] / IO_JOB_SECONDS * HTTP_SECONDS)
    task = sleep_briefly
    if not due:
        task = task.using(run_after=datetime.now(UTC) + timedelta(days=365))
    default_task_backend.bulk_enqueue([(task, (IO_JOB_SECONDS,), {})] * count)
    if due:
        wait_until(lambda: Job.objects.filter(status="RUNNING").exists(), 30)


def steady_requests() -> tuple[list[float], int | None]:
    """GET the job list HTTP_RATE times a second; return each request's time.

    Also samples the connections the server holds (PostgreSQL only).
    """
    samples: list[float] = []
    stop = threading.Event()
    peak_connections = [None]

    def watch_connections() -> None:
        while not stop.wait(0.5):
            count = server_connections()
            if count is not None:
                peak_connections[0] = max(peak_connections[0] or 0, count)

    watcher = threading.Thread(target=watch_connections)
    watcher.start()
    client = http.client.HTTPConnection("127.0.0.1", SERVER_PORT, timeout=10)
    interval = 1 / HTTP_RATE
    start = time.perf_counter()
    try:
        for index in range(HTTP_RATE * HTTP_SECONDS):
            delay = start + index * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            client.request("GET", "/")
            response = client.getresponse()
            response.read()
            samples.append(time.perf_counter() - sent)
            if response.status != 200:
                raise RuntimeError(f"GET / answered {response.status}")
    finally:
        stop.set()
        watcher.join()
        client.close()
    return samples, peak_connections[0]


def server_connections() -> int | None:
    """Connections to the benchmark database other than this process's own."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


# -- memory -----------------------------------------------------------------


def measure_extra_rss() -> float:
    """Resident memory a web process gains by running the queue, in MB.

    The example shop without the queue, after some requests, against the
    same with the queue after draining DRAIN_JOBS jobs and the same requests.
    """

    clear()
    with server("benchmarks.plain_asgi:application") as process:
        warm_up_requests()
        without_queue = resident_memory(process.pid)
    clear()
    with server("example.asgi:application") as process:
        enqueue_no_ops(DRAIN_JOBS)
        wait_until_drained()
        warm_up_requests()
        with_queue = resident_memory(process.pid)
    return (with_queue - without_queue) / 1024


def warm_up_requests() -> None:
    client = http.client.HTTPConnection("127.0.0.1", SERVER_PORT, timeout=10)
    for _ in range(300):
        client.request("GET", "/")
        client.getresponse().read()
    client.close()


def resident_memory(pid: int) -> int:
    """VmRSS of a process, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"No VmRSS for process {pid}")


# -- processes --------------------------------------------------------------


def environment(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT}:{ROOT / 'example_project'}",
        **extra,
    }


@contextmanager
def server(app: str, *, concurrency: int | None = None):
    """uvicorn, one process, serving ``app`` on the benchmark database."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", app),
            *("--port", str(SERVER_PORT), "--log-level", "warning"),
        ],
        cwd=ROOT,
        env=environment(
            DJANGO_SETTINGS_MODULE="benchmarks.server_settings",
            BENCH_CONCURRENCY=str(concurrency or ""),
        ),
    )
    try:
        wait_until(lambda: serves(process), 60)
        if app != "benchmarks.plain_asgi:application":
            wait_until(lambda: registered_processes() == 1, 30)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


@contextmanager
def worker_process():
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "dbqueue_worker", "-v", "0"],
        cwd=ROOT,
        env=environment(),
    )
    try:
        wait_until(lambda: registered_processes() == 1, 60)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def serves(process: subprocess.Popen) -> bool:
    if process.poll() is not None:
        raise RuntimeError("The server exited.")
    try:
        client = http.client.HTTPConnection("127.0.0.1", SERVER_PORT, timeout=2)
        client.request("GET", "/")
        return client.getresponse().status == 200
    except OSError:
        return False


def registered_processes() -> int:
    from dbqueue_embedded.models import WorkerProcess

    return WorkerProcess.objects.count()


def wait_until(condition, timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Gave up waiting for {condition}")
        time.sleep(interval)


def wait_until_drained(timeout: float = 120) -> None:
    """Wait, checking rarely: the checks share the CPU with the drain."""
    from dbqueue_embedded.models import Job

    # Jobs scheduled for later (the crowd) are not waited for.
    wait_until(
        lambda: (
            not Job.objects.exclude(status="SUCCESSFUL")
            .filter(run_after__isnull=True)
            .exists()
        ),
        timeout,
        0.5,
    )


if __name__ == "__main__":
    main()
