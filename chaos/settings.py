"""Settings of the chaos run, for its server and for the runner itself.

CHAOS_DATABASE is "sqlite" or "postgres"; CHAOS_DB_NAME is the SQLite file or
the PostgreSQL database name (PGHOST, PGPORT and PGUSER as in the tests).
The runtime's heartbeat and recovery options stay at their defaults: the run
measures what a user gets out of the box.
"""

import os

DATABASE = os.environ.get("CHAOS_DATABASE", "sqlite")

if DATABASE == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("CHAOS_DB_NAME", "dbqueue_chaos"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    }
elif DATABASE == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["CHAOS_DB_NAME"],
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL",
            },
        }
    }
else:
    raise ValueError(f"CHAOS_DATABASE must be sqlite or postgres, not {DATABASE!r}")

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "dbqueue_embedded",
    "chaos.chaosapp",
]
TASKS = {
    "default": {
        "BACKEND": "dbqueue_embedded.backend.DatabaseBackend",
        "QUEUES": [],
        "OPTIONS": {"concurrency": 4},
    }
}
ROOT_URLCONF = "chaos.urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DEBUG = False
SECRET_KEY = "chaos"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Warnings and errors of the queue (a discarded outcome, a recovered job, a
# runtime part restarted) and of Django's tasks (a failed job) go to stderr,
# which the run keeps in the server's log; the report counts them. Django's
# INFO line per job start and finish is left out.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "format": "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
        },
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "level": "WARNING",
        },
    },
    "loggers": {
        name: {"handlers": ["stderr"], "level": "WARNING", "propagate": False}
        for name in ["dbqueue_embedded", "django.tasks"]
    },
}
