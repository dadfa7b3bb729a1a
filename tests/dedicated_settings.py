"""A project whose queue lives in a database of its own, "queue".

Used by test_dedicated_database.py in subprocesses; DBQUEUE_APP_DB and
DBQUEUE_QUEUE_DB name the two databases.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES as _TEST_DATABASES

_base = {**_TEST_DATABASES["default"], "TEST": {}}
DATABASES = {
    "default": {**_base, "NAME": os.environ["DBQUEUE_APP_DB"]},
    "queue": {**_base, "NAME": os.environ["DBQUEUE_QUEUE_DB"]},
}
DATABASE_ROUTERS = ["dbqueue_embedded.routers.QueueRouter"]
TASKS = {
    "default": {
        "BACKEND": "dbqueue_embedded.backend.DatabaseBackend",
        "QUEUES": [],
        "OPTIONS": {"poll_interval": 0.05, "database": "queue"},
    }
}
