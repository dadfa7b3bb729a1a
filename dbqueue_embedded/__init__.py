"""A durable Django task queue that runs inside the web server process."""

__version__ = "0.1.0"
