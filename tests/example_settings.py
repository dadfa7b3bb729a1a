"""The example project's settings, on the test run's database.

Servers started by the tests import this: DBQUEUE_SHUTDOWN_TIMEOUT sets the
queue's shutdown timeout.
"""

import os

from example.settings import *  # noqa: F403
from example.settings import TASKS

from tests.settings import DATABASES  # noqa: F401

TASKS["default"]["OPTIONS"] = {
    **TASKS["default"]["OPTIONS"],
    "poll_interval": 0.2,
    "shutdown_timeout": float(os.environ.get("DBQUEUE_SHUTDOWN_TIMEOUT", "10")),
}
DEBUG = False
# The browser test watches the dashboard refresh.
DBQUEUE_DASHBOARD_REFRESH = 0.5
STATIC_ROOT = os.environ.get("STATIC_ROOT")
