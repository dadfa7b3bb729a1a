"""Exceptions recorded on jobs or raised to callers."""


class UnknownTask(ImportError):
    """A job's task path no longer points at a task in this process."""


class JobInterrupted(Exception):
    """An attempt that was cut short and handed back to the queue."""
