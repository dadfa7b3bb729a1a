import time

from django.tasks import task


@task
def noop() -> None:
    pass


@task
def started_at() -> float:
    """Return the time the task started: pickup latency is measured from it."""
    return time.time()


@task
def sleep_briefly(seconds: float) -> None:
    """A job that waits on I/O."""
    time.sleep(seconds)
