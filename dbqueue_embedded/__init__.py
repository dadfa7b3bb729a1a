"""A durable Django task queue that runs inside the web server process."""

from .context import JobContext
from .exceptions import (
    JobCancelled,
    JobInterrupted,
    JobNotCancellable,
    JobNotFailed,
    JobQuarantined,
    JobTimeout,
    UnknownTask,
    WorkerLost,
)
from .results import Progress, QueueTaskResult
from .task import QueueTask, task_options

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobInterrupted",
    "JobNotCancellable",
    "JobNotFailed",
    "JobQuarantined",
    "JobTimeout",
    "Progress",
    "QueueTask",
    "QueueTaskResult",
    "UnknownTask",
    "WorkerLost",
    "task_options",
]
__version__ = "0.1.0"
