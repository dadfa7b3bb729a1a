"""Settings for the test suite.

DBQUEUE_TEST_DATABASE picks the database: "sqlite" (default) or "postgres".
DBQUEUE_DB_NAME overrides the database name; the tests set it for worker
subprocesses so that they open the test database.
"""

import json
import os
import tempfile

DATABASE = os.environ.get("DBQUEUE_TEST_DATABASE", "sqlite")

if DATABASE == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("DBQUEUE_DB_NAME", "dbqueue_tests"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    }
elif DATABASE == "sqlite":
    # A file, not :memory:, so that worker subprocesses share it.
    _path = os.environ.get("DBQUEUE_DB_NAME") or os.path.join(
        tempfile.gettempdir(), f"dbqueue-tests-{os.getpid()}.sqlite3"
    )
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _path,
            "TEST": {"NAME": _path},
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL",
            },
        }
    }
else:
    raise ValueError(
        f"DBQUEUE_TEST_DATABASE must be sqlite or postgres, not {DATABASE!r}"
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "dbqueue_embedded",
    "dbqueue_embedded.contrib.django_db_queue",
    "tests.testapp",
]
TASKS = {
    "default": {
        "BACKEND": "dbqueue_embedded.backend.DatabaseBackend",
        "QUEUES": [],
        # DBQUEUE_TEST_OPTIONS: more OPTIONS, as JSON, for worker subprocesses.
        "OPTIONS": {
            "poll_interval": 0.05,
            **json.loads(os.environ.get("DBQUEUE_TEST_OPTIONS", "{}")),
        },
    }
}
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
# The admin and the dashboard (tests/urls.py).
ROOT_URLCONF = "tests.urls"
# The tests run their jobs in dbqueue_worker and in runtimes they start.
SILENCED_SYSTEM_CHECKS = ["dbqueue_embedded.W007"]
SECRET_KEY = "not-secret"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_STEPS = "tests.testapp.jobs"
JOBS = {
    "three_steps": {
        "tasks": [f"{_STEPS}.step_one", f"{_STEPS}.step_two", f"{_STEPS}.step_three"],
        "creation_hook": f"{_STEPS}.on_create",
        "pre_task_hook": f"{_STEPS}.before_step",
        "post_task_hook": f"{_STEPS}.after_step",
        "failure_hook": f"{_STEPS}.on_failure",
    },
    "one_step": {"tasks": [f"{_STEPS}.step_one"]},
}
