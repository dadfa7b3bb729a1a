"""The queue embedded in real servers: uvicorn, Gunicorn and Hypercorn.

Each test starts the example project as a server process on the test run's
database, enqueues from an HTTP request and watches the job through the
table: no separate worker process runs.
"""

import html
import http.cookiejar
import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest
from django.tasks import TaskResultStatus

from dbqueue_embedded.models import Job, WorkerProcess
from tests.conftest import ROOT, Subprocess, subprocess_env, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLE = ROOT / "example_project"
GUNICORN_CONF = str(ROOT / "contrib" / "gunicorn.conf.py")


def server_command(kind: str, port: int) -> list[str]:
    bind = f"127.0.0.1:{port}"
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF, "-b", bind]
    return {
        "uvicorn": [
            *(sys.executable, "-m", "uvicorn", "example.asgi:application"),
            *("--port", str(port), "--workers", "2"),
        ],
        "gunicorn-sync": [*gunicorn, "-w", "2", "-k", "sync", "example.wsgi"],
        "gunicorn-gthread": [
            *gunicorn,
            *("-w", "2", "-k", "gthread", "--threads", "4", "example.wsgi"),
        ],
        "gunicorn-uvicorn": [
            *gunicorn,
            *("-w", "2", "-k", "uvicorn.workers.UvicornWorker"),
            "example.asgi:application",
        ],
        "hypercorn": [
            *(sys.executable, "-m", "hypercorn", "example.asgi:application"),
            *("--bind", bind, "--workers", "2"),
        ],
    }[kind]


class ExampleServer(Subprocess):
    """The example project served by one kind of server, with two workers."""

    def __init__(self, kind: str, *extra: str, shutdown_timeout: float = 10) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [*server_command(kind, self.port), *extra],
            DJANGO_SETTINGS_MODULE="tests.example_settings",
            PYTHONPATH=f"{ROOT}:{EXAMPLE}",
            DBQUEUE_SHUTDOWN_TIMEOUT=str(shutdown_timeout),
        )
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies)
        )
        wait_for(self.serves_pages, timeout=30)
        # Started means both workers run their queue: a signal sent while a
        # worker still boots can be lost in Gunicorn.
        wait_for(lambda: len(self.embedded_processes()) == 2, timeout=30)

    def serves_pages(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"The server exited. Its output:\n{self.output()}")
        try:
            return self.opener.open(self.url, timeout=5).status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    def enqueue(self, kind: str) -> Job:
        """Press one of the example page's buttons; return the job it made."""
        before = set(Job.objects.values_list("id", flat=True))
        self.opener.open(self.url, timeout=10)
        token = next(c.value for c in self.cookies if c.name == "csrftoken")
        request = urllib.request.Request(
            f"{self.url}/enqueue/{kind}/",
            data=urllib.parse.urlencode({"csrfmiddlewaretoken": token}).encode(),
            headers={"Referer": self.url},
        )
        with self.opener.open(request, timeout=10) as response:
            assert response.status == 200  # redirected to the job list
        [job] = Job.objects.exclude(id__in=before)
        return job

    def embedded_processes(self) -> list[WorkerProcess]:
        return list(WorkerProcess.objects.filter(mode="embedded"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status_of(job: Job) -> str:
    job.refresh_from_db()
    return job.status


@pytest.fixture
def servers():
    started = []

    def start(kind: str, *extra: str, **options) -> ExampleServer:
        server = ExampleServer(kind, *extra, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.mark.parametrize(
    "kind",
    ["uvicorn", "gunicorn-sync", "gunicorn-gthread", "gunicorn-uvicorn", "hypercorn"],
)
def test_each_server_process_runs_the_queue_for_its_requests(servers, kind):
    server = servers(kind)
    # One runtime per server worker, never one in the master, never two.
    processes = wait_for(
        lambda: len(server.embedded_processes()) == 2 and server.embedded_processes()
    )
    assert server.process.pid not in {process.pid for process in processes}

    quick = server.enqueue("quick")
    running_async = server.enqueue("async")
    for job in (quick, running_async):
        wait_for(lambda job=job: status_of(job) == TaskResultStatus.SUCCESSFUL)
        assert job.worker_ids[0] in {process.id for process in processes}

    server.send_signal(signal.SIGTERM)
    output = server.finish(timeout=30)
    assert not WorkerProcess.objects.exists(), output


def stop_during_slow_job(servers, kind, shutdown_timeout):
    """SIGTERM a server while its 5 s job runs; the job and the server's output."""
    server = servers(kind, shutdown_timeout=shutdown_timeout)
    job = server.enqueue("slow")  # sleeps 5 s
    wait_for(lambda: status_of(job) == TaskResultStatus.RUNNING)
    server.send_signal(signal.SIGTERM)
    return job, server.finish(timeout=30)


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn-sync", "hypercorn"])
def test_a_stopping_server_lets_a_running_job_finish(servers, kind):
    job, output = stop_during_slow_job(servers, kind, shutdown_timeout=10)
    assert status_of(job) == TaskResultStatus.SUCCESSFUL, output
    assert job.errors == []


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn-sync", "hypercorn"])
def test_a_job_outliving_the_shutdown_timeout_runs_again_after_a_restart(servers, kind):
    job, output = stop_during_slow_job(servers, kind, shutdown_timeout=1)
    assert status_of(job) == TaskResultStatus.READY, output
    [interrupted] = job.errors
    assert interrupted["exception_class_path"].endswith("JobInterrupted")

    servers(kind, shutdown_timeout=1)
    wait_for(lambda: status_of(job) == TaskResultStatus.SUCCESSFUL, timeout=20)
    assert len(job.worker_ids) == 2


def test_a_recycled_gunicorn_worker_drains_its_jobs_first(servers):
    # Each worker exits after one request, as with max_requests in production.
    server = servers(
        "gunicorn-sync", "--max-requests", "1", "--max-requests-jitter", "0"
    )
    job = server.enqueue("slow")  # the worker that served this now recycles
    wait_for(lambda: status_of(job) == TaskResultStatus.SUCCESSFUL, timeout=20)
    assert job.errors == []
    assert len(job.worker_ids) == 1


@pytest.mark.parametrize(
    "command",
    [
        ["migrate", "--verbosity", "0"],
        ["check"],
        ["makemigrations", "--check", "--dry-run"],
        ["collectstatic", "--noinput", "--dry-run"],
        [
            "shell",
            "-c",
            "import threading; "
            "print(sorted({t.name.split('-')[0] for t in threading.enumerate()}))",
        ],
    ],
)
def test_management_commands_do_not_start_the_queue(command, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "django", *command],
        cwd=ROOT,
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="tests.example_settings",
            PYTHONPATH=f"{ROOT}:{EXAMPLE}",
            STATIC_ROOT=str(tmp_path),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert not WorkerProcess.objects.exists()
    assert "dbqueue" not in result.stdout


def test_the_example_s_three_step_job_shows_its_workspace_on_the_jobs_page(servers):
    server = servers("uvicorn")
    job = server.enqueue("catalogue")
    wait_for(lambda: status_of(job) == TaskResultStatus.SUCCESSFUL, timeout=30)
    assert len(job.worker_ids) == 3  # one claim per step
    assert job.workspace["steps_done"] == 3
    page = server.opener.open(server.url, timeout=10).read().decode()
    assert "import_catalogue" in page
    assert html.escape(f"'published_at': '{job.workspace['published_at']}'") in page


def test_the_example_s_export_shows_its_progress_while_it_runs(servers):
    server = servers("uvicorn")
    job = server.enqueue("export")  # 20 chunks of 0.25 s
    page = server.opener.open(server.url, timeout=10).read().decode()
    progress_url = f"/jobs/{job.id}/progress/"
    assert f'data-progress-url="{progress_url}"' in page  # polled by the page

    def polled() -> dict:
        with server.opener.open(server.url + progress_url, timeout=10) as reply:
            return json.load(reply)

    midway = wait_for(
        lambda: (
            (progress := polled()["progress"])
            and 0 < progress["done"] < progress["total"]
            and progress
        ),
        timeout=20,
    )
    assert midway["total"] == 20
    assert midway["message"].endswith("orders exported")
    last = wait_for(
        lambda: (reply := polled())["progress"]["done"] == 20 and reply, timeout=20
    )
    assert last["progress"]["percent"] == 100
    wait_for(lambda: polled()["status"] == TaskResultStatus.SUCCESSFUL)
    page = server.opener.open(server.url, timeout=10).read().decode()
    assert f"20/20 {html.escape(last['progress']['message'])}" in page
