"""Settings for the benchmark: BENCH_DATABASE is "sqlite" or "postgres"."""

import os

DATABASE = os.environ["BENCH_DATABASE"]
if DATABASE == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("BENCH_DB_NAME", "dbqueue_bench"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["BENCH_DB_NAME"],
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL",
            },
        }
    }
INSTALLED_APPS = ["dbqueue_embedded", "benchmarks.benchapp"]
TASKS = {"default": {"BACKEND": "dbqueue_embedded.backend.DatabaseBackend"}}
SECRET_KEY = "benchmark"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
