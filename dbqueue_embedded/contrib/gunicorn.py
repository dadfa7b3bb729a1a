"""Run the queue inside Gunicorn's worker processes.

In ``gunicorn.conf.py``::

    from dbqueue_embedded.contrib.gunicorn import post_fork, worker_exit

Every worker runs its own runtime (claims coordinate through the database), so
capacity grows with ``--workers``; the master never runs one. A worker that
exits (a stop, a deploy, ``max_requests``) drains its runtime first: claiming
stops, running jobs get ``shutdown_timeout`` seconds (keep Gunicorn's
``graceful_timeout`` longer), and jobs still running go back to the queue.

Works with ``preload_app`` on or off, and with sync, gthread and uvicorn
worker classes (with the last, the ASGI lifespan wrapper may start the runtime
too; only one starts). This module imports Django only when a hook runs, so
``gunicorn.conf.py`` can import it before Django is set up.
"""

from typing import Any

# Database connections a preloaded application opened in the master. A worker
# keeps its copies unclosed: closing one would end the master's session, whose
# socket the fork shares.
_inherited_connections: list[Any] = []


def post_fork(server: Any, worker: Any) -> None:
    """Gunicorn hook: start this worker's queue runtime."""
    from django.apps import apps

    _report_requests(worker)
    if apps.ready:  # preload_app: the master loaded the application
        _leave_inherited_connections()
        _start(server, worker)
        return
    load_wsgi = worker.load_wsgi

    def load_wsgi_then_start() -> None:
        load_wsgi()
        _start(server, worker)

    # Without preload_app, the worker loads the application after this hook.
    worker.load_wsgi = load_wsgi_then_start


def worker_exit(server: Any, worker: Any) -> None:
    """Gunicorn hook: drain this worker's queue runtime."""
    from ..runtime import embedded

    embedded.stop()


def _start(server: Any, worker: Any) -> None:
    from ..runtime import embedded

    runtimes = embedded.start(web_threads=server.cfg.threads)
    server.log.info(
        "Worker %s runs the queue: %s",
        worker.pid,
        ", ".join(runtime.worker_id for runtime in runtimes) or "no queue backend",
    )


def _report_requests(worker: Any) -> None:
    """Tell the runtime when the worker serves a request, so it yields to it.

    Sync and gthread workers serve each request in ``handle_request()``;
    ASGI workers have none, and ``EmbeddedQueue`` reports their requests.
    """
    from ..runtime.web_activity import web_requests

    handle_request = getattr(worker, "handle_request", None)
    if handle_request is None:
        return

    def handle_request_reported(*args: Any, **kwargs: Any) -> Any:
        web_requests.request_started()
        try:
            return handle_request(*args, **kwargs)
        finally:
            web_requests.request_finished()

    worker.handle_request = handle_request_reported


def _leave_inherited_connections() -> None:
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            _inherited_connections.append(connection.connection)
            connection.connection = None
