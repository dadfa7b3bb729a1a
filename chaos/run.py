"""Chaos run: the embedded queue under killed and frozen web workers, cut connections.

    python chaos/run.py --database sqlite|postgres [--deadline SECONDS] [--seed N]

Serves ``chaos.wsgi`` with Gunicorn (sync workers, the queue embedded in each,
the repository's ``contrib/gunicorn.conf.py``), enqueues jobs that each record
their execution in a side table, SIGKILLs a random web worker every few seconds
while they drain and, on PostgreSQL, twice terminates every database backend of
the site. After the last kill it freezes a worker that is running jobs (SIGSTOP)
for longer than the runtime's ``process_dead_after``, until the others presumed
it dead and recovered its jobs, then resumes it (SIGCONT): its jobs finish, and
their outcomes must be discarded (fenced out), and it must register again.

Then it checks that every job succeeded (none lost), that no job ran more often
than once plus the times it was interrupted, and that every job's outcome came
from its latest claim (no fenced-out write accepted). It prints the recovery
time of each kill and freeze: from the signal until none of the jobs the worker
held is still running under its claim.

Exits 0 when everything holds, 1 otherwise. The server's log is kept, and its
path printed, either way. PostgreSQL is reached as in the test suite (PGHOST,
PGPORT, PGUSER; default 127.0.0.1:5432 as postgres) and gets a fresh
``dbqueue_chaos`` database; SQLite gets a file in a new temporary directory.
"""

import argparse
import contextlib
import math
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "contrib" / "gunicorn.conf.py"
POSTGRES_DB_NAME = "dbqueue_chaos"
NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# How often the run looks at the job table while jobs drain.
POLL_SECONDS = 0.1
# Seconds from the enqueue to the first kill: the workers are all busy by then.
FIRST_KILL_AT = 3.0
# What the queue logs when a finish or release came from a claim that had
# already ended, and was refused (runtime/executor.py).
DISCARDED = "was discarded"
# What a runtime logs when its heartbeat finds its row removed by another.
PRESUMED_DEAD = "was presumed dead by another process"
# A freeze lasts this much longer than the runtime's process_dead_after: the
# others presume the worker dead and recover its jobs before it resumes...
FREEZE_MARGIN = 4.0
# ... and, while its jobs are not recovered yet, up to this much longer still.
FREEZE_GRACE = 10.0
# Seconds after a thaw to wait for the worker's discarded outcomes and its
# registering again.
SETTLE_SECONDS = 5.0
SQLITE_FILE = "chaos.sqlite3"
LOG_RECORD = re.compile(r"\] (WARNING|ERROR|CRITICAL) ([\w.]+): ")


@dataclass
class Kill:
    number: int
    at: float  # seconds since the jobs were enqueued
    pid: int
    worker_id: str | None  # None: the worker's runtime had not registered yet
    held: list[str]  # ids of the jobs it was running
    recovered_after: float | None = None

    @property
    def label(self) -> str:
        return f"{type(self).__name__} {self.number}"


@dataclass
class Freeze(Kill):
    thawed_after: float | None = None  # None while frozen
    log_offset: int = 0  # the size of the server's log at the thaw
    discarded: int = 0  # outcomes it logged as discarded after the thaw
    registered_again: bool = False  # it logged that it was presumed dead
    settled: bool = False  # done reading its log after the thaw


@dataclass
class Run:
    options: argparse.Namespace
    directory: Path
    url: str = ""
    started: float = field(default_factory=time.monotonic)
    enqueued_at: float = 0.0
    dead_after: float = 0.0  # the runtime's process_dead_after
    kills: list[Kill] = field(default_factory=list)
    freezes: list[Freeze] = field(default_factory=list)
    terminated: list[int] = field(default_factory=list)  # backends, per time
    totals: list[tuple[str, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def elapsed(self) -> float:
        return time.monotonic() - self.enqueued_at

    def say(self, message: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {message}", flush=True)

    @property
    def freeze_seconds(self) -> float:
        return self.dead_after + FREEZE_MARGIN

    @property
    def gunicorn_timeout(self) -> int:
        """Gunicorn's worker timeout: longer than twice the longest freeze.

        An idle sync worker tells the master it is alive every timeout / 2 s,
        so a frozen one must resume within the other half.
        """
        if not self.options.freezes:
            return 30  # Gunicorn's default
        return max(30, math.ceil(2 * (self.freeze_seconds + FREEZE_GRACE)) + 5)


def main() -> int:
    options = parse_arguments()
    directory = Path(tempfile.mkdtemp(prefix=f"dbqueue-chaos-{options.database}-"))
    run = Run(options=options, directory=directory)
    set_up_django(options.database, directory)
    run.dead_after = process_dead_after()
    print(
        f"Chaos run on {NAMES[options.database]}: {options.jobs:,} jobs of "
        f"{options.job_seconds} s, {options.workers} Gunicorn sync workers x "
        f"concurrency 4, {options.kills} kills every {options.kill_every} s, "
        f"{options.freezes} freeze(s) of at least {run.freeze_seconds:g} s "
        f"(process_dead_after {run.dead_after:g} s + {FREEZE_MARGIN:g}; Gunicorn "
        f"timeout {run.gunicorn_timeout} s), seed {options.seed}.",
        flush=True,
    )
    server = start_server(run)
    try:
        wait_until_started(run, server)
        enqueue_jobs(run)
        unleash_chaos(run, server)
        check_jobs(run)
    finally:
        stop_server(run, server)
    check_after_stop(run)
    report(run)
    if run.failures:
        print("FAILED:\n" + "\n".join(f"  - {failure}" for failure in run.failures))
        return 1
    print("PASSED")
    return 0


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument(
        "--job-seconds", type=float, default=0.2, help="how long each job sleeps"
    )
    parser.add_argument("--workers", type=int, default=3, help="Gunicorn workers")
    parser.add_argument("--kills", type=int, default=5, help="workers to SIGKILL")
    parser.add_argument(
        "--kill-every", type=float, default=5.0, help="seconds between two kills"
    )
    parser.add_argument(
        "--freezes",
        type=int,
        default=1,
        help="workers to SIGSTOP past process_dead_after, then SIGCONT",
    )
    parser.add_argument(
        "--terminations",
        type=int,
        default=2,
        help="times to terminate every database backend (PostgreSQL only)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=180.0,
        help="seconds from the enqueue for every job to succeed",
    )
    parser.add_argument(
        "--stall",
        type=float,
        default=45.0,
        help="give up when no job succeeded for this many seconds after the chaos",
    )
    parser.add_argument("--seed", type=int, default=random.randrange(10_000))
    return parser.parse_args()


# -- set-up -------------------------------------------------------------------


def set_up_django(database: str, directory: Path) -> None:
    """Point this process and the server at a fresh, migrated database."""
    name = str(directory / SQLITE_FILE) if database == "sqlite" else POSTGRES_DB_NAME
    os.environ.update(
        DJANGO_SETTINGS_MODULE="chaos.settings",
        CHAOS_DATABASE=database,
        CHAOS_DB_NAME=name,
    )
    sys.path.insert(0, str(ROOT))
    if database == "postgres":
        from benchmarks.run import recreate_postgres_database

        recreate_postgres_database(name)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def process_dead_after() -> float:
    """The runtime's process_dead_after, as the runtime itself works it out."""
    from django.db import connection
    from django.tasks import default_task_backend

    from dbqueue_embedded.conf import process_dead_after

    options = default_task_backend.runtime_options  # type: ignore[attr-defined]
    return process_dead_after(options, connection.vendor)


def start_server(run: Run) -> subprocess.Popen[bytes]:
    port = free_port()
    run.url = f"http://127.0.0.1:{port}/"
    command = [
        *(sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF)),
        *("--bind", f"127.0.0.1:{port}", "--workers", str(run.options.workers)),
        *("--worker-class", "sync", "--graceful-timeout", "15"),
        *("--timeout", str(run.gunicorn_timeout)),
        "chaos.wsgi",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with run.log_path.open("wb") as log:
        # A session of its own, so that the whole group can be killed at the end.
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_started(run: Run, server: subprocess.Popen[bytes]) -> None:
    """Until the site serves and every worker's runtime has registered."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(
                f"The server exited with {server.returncode}; see {run.log_path}:\n"
                + tail(run.log_path)
            )
        if serves(run.url) and len(runtimes(server.pid)) == run.options.workers:
            return
        time.sleep(0.2)
    raise SystemExit(
        f"The server did not start within 30 s; see {run.log_path}:\n"
        + tail(run.log_path)
    )


def serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def enqueue_jobs(run: Run) -> None:
    from django.tasks import default_task_backend

    from chaos.chaosapp.tasks import record_and_sleep

    started = time.monotonic()
    default_task_backend.bulk_enqueue(  # type: ignore[attr-defined]
        [(record_and_sleep, (run.options.job_seconds,), {})] * run.options.jobs
    )
    run.enqueued_at = time.monotonic()
    run.say(f"Enqueued {run.options.jobs:,} jobs in {run.enqueued_at - started:.1f} s.")


# -- chaos --------------------------------------------------------------------


def unleash_chaos(run: Run, server: subprocess.Popen[bytes]) -> None:
    """Kill, freeze and thaw workers and cut connections until the jobs drained.

    Watches, in the same loop, how long the jobs of each killed or frozen
    worker stay running under its claim. Returns when every job succeeded and
    every frozen worker was thawed and its log read, at the deadline, or when no
    job succeeded for ``--stall`` seconds after the last scheduled event.
    """
    options = run.options
    rng = random.Random(options.seed)
    events = schedule(run)
    last_event = events[-1][0] if events else 0.0
    successful, progressed_at, reported_at = 0, 0.0, 0.0
    while True:
        now = run.elapsed()
        while events and events[0][0] <= now:
            _, kind = events.pop(0)
            if kind == "kill":
                kill_a_worker(run, server, rng)
            elif kind == "freeze":
                freeze_a_worker(run, server, rng)
            else:
                terminate_backends(run)
        watch_recoveries(run)
        watch_freezes(run)
        if events and now - reported_at < 5:
            time.sleep(POLL_SECONDS)
            continue
        counts = job_counts()
        if counts.get("SUCCESSFUL", 0) > successful:
            successful, progressed_at = counts["SUCCESSFUL"], now
        if now - reported_at >= 5:
            reported_at = now
            run.say(f"Jobs: {format_counts(counts)}")
        settled = all(freeze.settled for freeze in run.freezes)
        if not events and settled and successful == options.jobs:
            run.say("Every job succeeded.")
            return
        if now > options.deadline:
            run.failures.append(
                f"Not every job succeeded within the deadline of "
                f"{options.deadline:.0f} s: {format_counts(counts)}."
            )
            return
        if not events and now - max(progressed_at, last_event) > options.stall:
            run.failures.append(
                f"No job succeeded for {options.stall:.0f} s, gave up at "
                f"{now:.0f} s: {format_counts(counts)}."
            )
            return
        time.sleep(POLL_SECONDS)


def schedule(run: Run) -> list[tuple[float, str]]:
    """When to kill, freeze a worker and terminate backends, in order."""
    options = run.options
    events = [
        (FIRST_KILL_AT + i * options.kill_every, "kill") for i in range(options.kills)
    ]
    # Halfway between the last kill and the next one there would be, then one
    # after the other (a freeze ends once its jobs were recovered).
    first_freeze = FIRST_KILL_AT + max(0.0, options.kills - 0.5) * options.kill_every
    events += [
        (first_freeze + i * (run.freeze_seconds + options.kill_every), "freeze")
        for i in range(options.freezes)
    ]
    if options.database == "postgres":
        # Halfway between two kills: after the 2nd, after the 4th, ...
        events += [
            (FIRST_KILL_AT + (2 * i + 1.5) * options.kill_every, "terminate")
            for i in range(options.terminations)
        ]
    else:
        run.say(
            "SQLite has no database backends to terminate: that step does not apply."
        )
    return sorted(events)


def watch_recoveries(run: Run) -> None:
    """Note the time each killed or frozen worker's jobs stopped running under
    its claim (a frozen one's only while it is frozen)."""
    from dbqueue_embedded.models import Job

    watched = [*run.kills, *(f for f in run.freezes if f.thawed_after is None)]
    pending = {k.worker_id: k for k in watched if k.recovered_after is None}
    if not pending:
        return
    holding = set(
        Job.objects.filter(status="RUNNING", claimed_by__in=list(pending))
        .values_list("claimed_by", flat=True)
        .distinct()
    )
    for worker_id, kill in pending.items():
        if worker_id not in holding:
            kill.recovered_after = run.elapsed() - kill.at
            run.say(
                f"{kill.label} recovered in {kill.recovered_after:.1f} s "
                f"({len(kill.held)} jobs)."
            )


def job_counts() -> dict[str, int]:
    from django.db.models import Count

    from dbqueue_embedded.models import Job

    return dict(Job.objects.values_list("status").annotate(n=Count("id")).order_by())


def pick_a_worker(
    run: Run,
    server: subprocess.Popen[bytes],
    rng: random.Random,
    *,
    registered_only: bool,
) -> tuple[int, str | None] | None:
    """A random web worker and its runtime's id, never a frozen one.

    Preferably one that is running jobs, else one whose runtime registered,
    else (unless ``registered_only``) any. None when there is none.
    """
    from django.db.models import Count

    from dbqueue_embedded.models import Job

    by_pid = runtimes(server.pid)
    running = dict(
        Job.objects.filter(status="RUNNING", claimed_by__in=list(by_pid.values()))
        .values_list("claimed_by")
        .annotate(n=Count("id"))
        .order_by()
    )
    frozen = {freeze.pid for freeze in run.freezes if freeze.thawed_after is None}
    workers = [pid for pid in children(server.pid) if pid not in frozen]
    busy = [pid for pid in workers if running.get(by_pid.get(pid, ""), 0)]
    registered = [pid for pid in workers if pid in by_pid]
    tiers = [busy, registered] if registered_only else [busy, registered, workers]
    tier = next((tier for tier in tiers if tier), None)
    if tier is None:
        return None
    pid = rng.choice(tier)
    return pid, by_pid.get(pid)


def held_jobs(worker_id: str | None) -> list[str]:
    """The ids of the jobs running under the claim of ``worker_id``."""
    from dbqueue_embedded.models import Job

    if worker_id is None:
        return []
    jobs = Job.objects.filter(status="RUNNING", claimed_by=worker_id)
    return [str(job_id) for job_id in jobs.values_list("id", flat=True)]


def kill_a_worker(
    run: Run, server: subprocess.Popen[bytes], rng: random.Random
) -> None:
    """SIGKILL a random web worker, preferably one that is running jobs."""
    picked = pick_a_worker(run, server, rng, registered_only=False)
    if picked is None:
        run.failures.append("The server had no worker to kill: did Gunicorn stop?")
        return
    pid, worker_id = picked
    killed_at = run.elapsed()
    os.kill(pid, signal.SIGKILL)
    wait_for_state(pid, "ZX")
    # Read once the process is dead: it can no longer claim or finish a job.
    kill = Kill(len(run.kills) + 1, killed_at, pid, worker_id, held_jobs(worker_id))
    if not kill.held:
        kill.recovered_after = 0.0
    run.kills.append(kill)
    run.say(
        f"Kill {kill.number}: SIGKILL worker pid {pid} "
        f"({worker_id or 'no runtime registered yet'}), running {len(kill.held)} jobs."
    )


def freeze_a_worker(
    run: Run, server: subprocess.Popen[bytes], rng: random.Random
) -> None:
    """SIGSTOP a registered web worker, preferably one that is running jobs.

    As a long pause (a stalled VM, swapping) would: it stops heartbeating but
    keeps its claims and, once resumed, finishes the jobs it was running.
    """
    for _ in range(5):
        picked = pick_a_worker(run, server, rng, registered_only=True)
        if picked is None:
            run.failures.append("The server had no registered worker to freeze.")
            return
        pid, worker_id = picked
        stopped_at = run.elapsed()
        os.kill(pid, signal.SIGSTOP)
        wait_for_state(pid, "T")
        if not blocks_writers(run):
            break
        os.kill(pid, signal.SIGCONT)
        run.say(f"Worker pid {pid} stopped holding SQLite's write lock: resumed it.")
        time.sleep(0.5)
    else:
        run.failures.append("Could not freeze a worker outside a write transaction.")
        return
    # Read once every thread stopped: it can no longer claim or finish a job.
    freeze = Freeze(
        len(run.freezes) + 1, stopped_at, pid, worker_id, held_jobs(worker_id)
    )
    if not freeze.held:
        freeze.recovered_after = 0.0
    run.freezes.append(freeze)
    run.say(
        f"Freeze {freeze.number}: SIGSTOP worker pid {pid} ({freeze.worker_id}), "
        f"running {len(freeze.held)} jobs."
    )


def blocks_writers(run: Run) -> bool:
    """Whether SQLite's write lock stays taken for 2 s (by a frozen worker).

    A worker stopped inside a write would stall every other process. On
    PostgreSQL the runtime writes in autocommit statements, which complete on
    the server whether or not their client is stopped.
    """
    if run.options.database != "sqlite":
        return False
    path = run.directory / SQLITE_FILE
    with contextlib.closing(
        sqlite3.connect(path, timeout=2, isolation_level=None)
    ) as db:
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return True
        db.execute("ROLLBACK")
    return False


def watch_freezes(run: Run) -> None:
    """Thaw each frozen worker once its jobs were recovered, no sooner than
    ``freeze_seconds``; then read what it logged after the thaw."""
    for freeze in run.freezes:
        frozen_for = run.elapsed() - freeze.at
        if freeze.thawed_after is None:
            recovered = freeze.recovered_after is not None
            if frozen_for >= run.freeze_seconds + (0 if recovered else FREEZE_GRACE):
                thaw(run, freeze)
        elif not freeze.settled:
            read_log_after_thaw(run, freeze, frozen_for - freeze.thawed_after)


def thaw(run: Run, freeze: Freeze) -> None:
    freeze.log_offset = run.log_path.stat().st_size
    os.kill(freeze.pid, signal.SIGCONT)
    freeze.thawed_after = run.elapsed() - freeze.at
    run.say(
        f"Freeze {freeze.number}: SIGCONT worker pid {freeze.pid} after "
        f"{freeze.thawed_after:.1f} s."
    )
    if freeze.recovered_after is None:
        run.failures.append(
            f"Freeze {freeze.number}: {len(freeze.held)} jobs of worker "
            f"{freeze.worker_id} were still running under its claim after "
            f"{freeze.thawed_after:.1f} s frozen."
        )


def read_log_after_thaw(run: Run, freeze: Freeze, since_thaw: float) -> None:
    """Count the thawed worker's discarded outcomes; see it register again."""
    with run.log_path.open("rb") as log:
        log.seek(freeze.log_offset)
        lines = log.read().decode(errors="replace").splitlines()
    own = [line for line in lines if f"[{freeze.pid}]" in line]
    freeze.discarded = sum(DISCARDED in line for line in own)
    freeze.registered_again = any(PRESUMED_DEAD in line for line in own)
    done = freeze.registered_again and freeze.discarded >= len(freeze.held)
    if not done and since_thaw < SETTLE_SECONDS:
        return
    freeze.settled = True
    run.say(
        f"Freeze {freeze.number}: after the thaw, {freeze.discarded} outcomes "
        f"discarded, "
        + ("registered again." if freeze.registered_again else "no new registration.")
    )
    if freeze.held and not freeze.discarded:
        run.failures.append(
            f"Freeze {freeze.number}: none of the outcomes of its "
            f"{len(freeze.held)} recovered jobs was discarded after the thaw."
        )
    if freeze.held and not freeze.registered_again:
        run.failures.append(
            f"Freeze {freeze.number}: worker {freeze.worker_id} did not log that it "
            f"was presumed dead within {SETTLE_SECONDS:g} s of the thaw."
        )


def terminate_backends(run: Run) -> None:
    """Terminate every backend of the chaos database but this process's own."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        count = len(cursor.fetchall())
    run.terminated.append(count)
    run.say(f"Terminated {count} database backends.")


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``: Gunicorn's workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name, in parentheses, may hold spaces: split after it.
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == pid and state != "Z":
            found.append(int(entry.name))
    return sorted(found)


def runtimes(master: int) -> dict[int, str]:
    """The registered runtime of each live worker of the server, by pid."""
    from dbqueue_embedded.models import WorkerProcess

    pids = children(master)
    return dict(
        WorkerProcess.objects.filter(pid__in=pids, hostname=socket.gethostname())
        .order_by("started_at")
        .values_list("pid", "id")
    )


def wait_for_state(pid: int, states: str) -> None:
    """Until every thread of ``pid`` is in one of ``states`` (as /proc tells
    them: Z zombie, X dead, T stopped) or the process is reaped; at most 5 s."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            threads = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            return
        found = []
        for thread in threads:
            with contextlib.suppress(OSError):  # the thread exited meanwhile
                found.append((thread / "stat").read_text().rsplit(")", 1)[1].split()[0])
        if all(state in states for state in found):
            return
        time.sleep(0.01)


# -- checks -------------------------------------------------------------------


def check_jobs(run: Run) -> None:
    """Check the job table against the side table."""
    from django.db.models import Count

    from chaos.chaosapp.models import Execution
    from dbqueue_embedded.models import Job

    jobs = list(
        Job.objects.values("id", "status", "errors", "worker_ids", "return_value")
    )
    executions = Counter(
        dict(Execution.objects.values_list("job_id").annotate(n=Count("id")).order_by())
    )
    statuses = Counter(job["status"] for job in jobs)
    errors = Counter(
        error["exception_class_path"] for job in jobs for error in job["errors"]
    )
    too_many: list[str] = []
    fenced_in: list[str] = []
    unrecorded: list[str] = []
    for job in jobs:
        job_id, interrupted = str(job["id"]), len(job["errors"])
        ran = executions[job_id]
        if ran > 1 + interrupted:
            too_many.append(f"{job_id} ran {ran} times, interrupted {interrupted}")
        if job["status"] != "SUCCESSFUL":
            continue
        if ran == 0:
            unrecorded.append(job_id)
        value, claims = job["return_value"] or {}, job["worker_ids"]
        if value.get("attempt") != len(claims) or value.get("worker_id") != claims[-1]:
            fenced_in.append(f"{job_id}: outcome {value}, claims {claims}")

    lost = run.options.jobs - statuses["SUCCESSFUL"]
    run.totals = [
        ("jobs", len(jobs)),
        ("successful", statuses["SUCCESSFUL"]),
        ("lost (not SUCCESSFUL)", lost),
        ("executions", sum(executions.values())),
        ("max executions of a job", max(executions.values(), default=0)),
        ("interrupted attempts", errors.total()),
        *((f"  of which {path}", count) for path, count in sorted(errors.items())),
        ("duplicate executions", sum(n - 1 for n in executions.values() if n > 1)),
        ("fenced-out writes accepted", len(fenced_in)),
    ]
    if len(jobs) != run.options.jobs:
        run.failures.append(f"{len(jobs):,} jobs exist, {run.options.jobs:,} enqueued.")
    if lost:
        run.failures.append(f"{lost:,} jobs lost: {format_counts(statuses)}.")
    for label, problems in [
        ("jobs ran more often than once plus their interruptions", too_many),
        ("successful jobs have no execution recorded", unrecorded),
        ("jobs took their outcome from an older claim (fenced-out write)", fenced_in),
    ]:
        if problems:
            shown = "".join(f"\n      {problem}" for problem in problems[:5])
            run.failures.append(f"{len(problems):,} {label}:{shown}")


def check_after_stop(run: Run) -> None:
    """Count what the stopped server left: its log records and process rows.

    The log tells the fenced-out writes the queue refused. Live runtimes
    deregister when they stop, so rows left are of killed workers that no
    other process cleared (not an assertion: informational).
    """
    from dbqueue_embedded.models import WorkerProcess

    lines = run.log_path.read_text(errors="replace").splitlines()
    run.totals.append(
        ("fenced-out writes rejected", sum(DISCARDED in line for line in lines))
    )
    # As chaos.settings formats them: "... [pid] LEVEL logger: message".
    records = Counter(
        f"{match[1]} {match[2]}" for line in lines if (match := LOG_RECORD.search(line))
    )
    run.totals += [
        (f"log: {record}", count) for record, count in sorted(records.items())
    ]
    run.totals.append(
        ("process rows left after the stop", WorkerProcess.objects.count())
    )


def report(run: Run) -> None:
    options = run.options
    if options.database == "postgres":
        backends = ", ".join(map(str, run.terminated)) or "no"
        terminations = f"{len(run.terminated)} of {options.terminations}"
        terminations += f" ({backends} backends)"
    else:
        terminations = "does not apply to SQLite"
    print("\nEvents")
    for label, done in [
        ("SIGKILL of a worker", f"{len(run.kills)} of {options.kills}"),
        (
            "SIGSTOP, then SIGCONT, of a worker",
            f"{len(run.freezes)} of {options.freezes}",
        ),
        ("termination of every database backend", terminations),
    ]:
        print(f"  {label:40}{done}")
    print(
        f"\n  {'Event':9} {'at':>7} {'pid':>6} {'jobs held':>10} "
        f"{'recovered in':>13} {'frozen for':>11} {'discarded after':>16}  worker"
    )
    for event in [*run.kills, *run.freezes]:
        if not event.held:
            recovery = "n/a"
        elif event.recovered_after is None:
            recovery = "never"
            if not isinstance(event, Freeze):  # a freeze's failed when thawed
                run.failures.append(
                    f"{event.label}: {len(event.held)} jobs of worker "
                    f"{event.worker_id} were still running under its claim at the end."
                )
        else:
            recovery = f"{event.recovered_after:.1f} s"
        frozen, discarded, worker = "-", "-", event.worker_id or "-"
        if isinstance(event, Freeze):
            if event.thawed_after is not None:
                frozen = f"{event.thawed_after:.1f} s"
            discarded = str(event.discarded)
            worker += ", registered again" if event.registered_again else ""
        print(
            f"  {event.label:9} {event.at:6.1f}s {event.pid:>6} {len(event.held):>10} "
            f"{recovery:>13} {frozen:>11} {discarded:>16}  {worker}"
        )
    for kind, done, planned in [
        ("kills", run.kills, options.kills),
        ("freezes", run.freezes, options.freezes),
    ]:
        if len(done) < planned:
            run.failures.append(f"Only {len(done)} of {planned} {kind} ran.")
    print("\nTotals")
    for label, value in run.totals:
        print(f"  {label:50}{value:>8,}")
    print(f"  {'wall time (s)':50}{time.monotonic() - run.started:>8.1f}")
    print(f"\nServer log: {run.log_path}")


def format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{status} {count:,}" for status, count in sorted(counts.items()))


# -- tear-down ----------------------------------------------------------------


def stop_server(run: Run, server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the master; SIGKILL its whole group if it has not exited in 30 s."""
    for freeze in run.freezes:
        if freeze.thawed_after is None:  # the run stopped early: let it stop too
            with contextlib.suppress(ProcessLookupError):
                os.kill(freeze.pid, signal.SIGCONT)
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            run.failures.append("The server did not stop within 30 s of SIGTERM.")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)  # workers left behind, if any
    server.wait()


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


if __name__ == "__main__":
    sys.exit(main())
