"""Settings of the example shop: SQLite, the queue, and nothing else to set up."""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "dbqueue_embedded",
    "shop",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "example.urls"
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
WSGI_APPLICATION = "example.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
        "OPTIONS": {
            # Web requests and the queue write to one file: let writers wait
            # for each other instead of failing, and take the write lock up
            # front so a transaction never fails to upgrade its lock.
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL",
        },
    }
}

TASKS = {
    "default": {
        "BACKEND": "dbqueue_embedded.backend.DatabaseBackend",
        "QUEUES": [],
        "OPTIONS": {"concurrency": 4},
    }
}

# A named multi-step job, django-db-queue style (see shop/jobs.py).
JOBS = {
    "import_catalogue": {
        "tasks": [
            "shop.jobs.download_catalogue",
            "shop.jobs.validate_rows",
            "shop.jobs.publish_products",
        ],
        "creation_hook": "shop.jobs.note_supplier",
        "post_task_hook": "shop.jobs.note_step",
    },
}

# Show the queue's own log lines (start, stop, failures) on the console.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"dbqueue_embedded": {"handlers": ["console"], "level": "INFO"}},
}

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
