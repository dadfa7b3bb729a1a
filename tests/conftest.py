"""Shared fixtures. Every test runs on the database DBQUEUE_TEST_DATABASE names."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.tasks import TaskResult
from django.test import Client
from django.utils import timezone

from dbqueue_embedded import store
from dbqueue_embedded.models import Job, WorkerProcess
from dbqueue_embedded.runtime.supervisor import Runtime
from dbqueue_embedded.store import processes

ROOT = Path(__file__).resolve().parent.parent


def register_process(
    process_id: str, *, heartbeat_age: timedelta = timedelta(0), **fields: object
) -> None:
    """A process row as a runtime registers it; an old heartbeat makes it look dead."""
    values = {
        "mode": "embedded",
        "hostname": "test",
        "pid": 1,
        "queues": ["*"],
        "concurrency": 1,
        "connection_budget": 4,
        "dead_after": timedelta(seconds=1),
        **fields,
    }
    processes.register_process(
        using="default", process_id=process_id, backend="default", **values
    )
    if heartbeat_age:
        WorkerProcess.objects.filter(id=process_id).update(
            last_heartbeat_at=timezone.now() - heartbeat_age
        )


def client_for(
    *permissions: str, staff: bool = True, superuser: bool = False
) -> Client:
    """A test client logged in as a new user holding these permissions
    (codenames), staff unless told otherwise."""
    user = User.objects.create_user(
        f"user{User.objects.count()}",
        password="x",
        is_staff=staff,
        is_superuser=superuser,
    )
    user.user_permissions.set(Permission.objects.filter(codename__in=permissions))
    client = Client()
    client.force_login(user)
    return client


def finished(result: TaskResult) -> bool:
    """Refresh a result and tell whether its job has finished."""
    result.refresh()
    return result.is_finished


def insert_jobs_with_paths(paths: list[str], args: tuple = ()) -> list[Job]:
    """Jobs as another deploy may have left them: task paths this code lacks."""
    now = timezone.now()
    jobs = [
        store.NewJob(
            id=uuid.uuid4(),
            backend="default",
            queue_name="default",
            task_path=path,
            priority=0,
            args=list(args),
            kwargs={},
            run_after=None,
            available_at=now,
            enqueued_at=now,
        )
        for path in paths
    ]
    store.insert_jobs(jobs, using="default")
    return [Job.objects.get(id=job.id) for job in jobs]


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> object:
    """Poll until ``condition()`` is truthy and return it, or fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {timeout} s waiting for {condition}")
        time.sleep(0.01)


@pytest.fixture
def run_worker() -> Iterator[Callable[..., Runtime]]:
    """Run the runtime in this process until the queue is empty.

    Needs committed data: use it from tests marked
    ``@pytest.mark.django_db(transaction=True)``.
    """
    runtimes = []

    def run(**options: object) -> Runtime:
        runtime = Runtime("default", exit_when_empty=True, **options)
        runtimes.append(runtime)
        runtime.start()
        if not runtime.wait(timeout=30):
            pytest.fail("The worker did not drain the queue within 30 s.")
        return runtime

    yield run
    for runtime in runtimes:
        runtime.stop()


@pytest.fixture
def background_worker() -> Iterator[Callable[..., Runtime]]:
    """Start runtimes in this process that keep running until the test ends."""
    runtimes = []

    def start(**options: object) -> Runtime:
        runtime = Runtime("default", **options)
        runtimes.append(runtime)
        runtime.start()
        return runtime

    yield start
    for runtime in runtimes:
        runtime.stop()


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess that uses this test run's database."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DBQUEUE_DB_NAME": str(connection.settings_dict["NAME"]),
        **extra,
    }


class Subprocess:
    """A command running as a separate process on the test database.

    Its output goes to a file, so a test can wait for a line while it runs.
    """

    def __init__(self, command: list[str], **env: str) -> None:
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log")  # noqa: SIM115
        # A process group of its own, so that kill() also ends its children
        # (a server's workers) rather than leaving them running orphaned.
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=subprocess_env(**env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def finish(self, timeout: float = 60) -> str:
        """Wait for the process to exit; return its output, failing on a hang."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"The process hung. Its output:\n{self.output()}")
        output = self.output()
        self.log.close()
        return output

    def kill(self) -> None:
        """Kill the process and every process it started."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    @property
    def returncode(self) -> int | None:
        return self.process.returncode


class WorkerSubprocess(Subprocess):
    """A worker command (``dbqueue_worker`` unless told) as a separate process."""

    def __init__(
        self,
        *arguments: str,
        command: str = "dbqueue_worker",
        env_options: dict[str, object] | None = None,
        **env: str,
    ) -> None:
        if env_options:  # read by tests/settings.py into the backend's OPTIONS
            env["DBQUEUE_TEST_OPTIONS"] = json.dumps(env_options)
        super().__init__([sys.executable, "-m", "django", command, *arguments], **env)


TEST_DATABASE = os.environ.get("DBQUEUE_TEST_DATABASE", "sqlite")
requires_postgres = pytest.mark.skipif(
    TEST_DATABASE != "postgres", reason="PostgreSQL only"
)
requires_sqlite = pytest.mark.skipif(TEST_DATABASE != "sqlite", reason="SQLite only")
