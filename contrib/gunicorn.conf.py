"""Gunicorn with the queue running in every worker process.

    gunicorn -c contrib/gunicorn.conf.py example.wsgi   (from example_project/)

Each worker runs its own queue runtime: capacity grows with ``workers``.
"""

import multiprocessing

from dbqueue_embedded.contrib.gunicorn import post_fork, worker_exit  # noqa: F401

bind = "127.0.0.1:8000"
workers = min(4, multiprocessing.cpu_count() * 2)
# Load the application once in the master; the hooks give each worker its own
# database connections and its own runtime.
preload_app = True
# A stopping worker first gives running jobs OPTIONS["shutdown_timeout"]
# seconds (10 by default): let Gunicorn wait longer than that.
graceful_timeout = 30
# Recycle workers now and then; their running jobs finish or go back to the
# queue, none is lost.
max_requests = 10_000
max_requests_jitter = 1_000
