import logging
import signal
import sys
from argparse import ArgumentTypeError
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand

from dbqueue_embedded.conf import validate_option
from dbqueue_embedded.runtime.supervisor import Runtime


def runtime_option(name: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type that accepts what OPTIONS[name] accepts."""

    def parse(text: str) -> Any:
        try:
            return validate_option(name, convert(text))
        except ValueError as exc:
            raise ArgumentTypeError(str(exc)) from None

    parse.__name__ = name
    return parse


class Command(BaseCommand):
    help = (
        "Run queued tasks until stopped. SIGTERM or Ctrl-C stops gracefully: no new "
        "jobs are claimed, running jobs get --shutdown-timeout seconds, and jobs "
        "still running then go back to the queue. A second signal releases them "
        "at once."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--queue",
            "-q",
            dest="queues",
            action="append",
            type=runtime_option("worker_queues", str),
            metavar="SELECTOR",
            help=(
                "Queue to take jobs from: a name, a prefix ending in '*' "
                "('emails-*'), or '*' for every queue. Repeat it or separate "
                "names with commas; earlier selectors are preferred. "
                "Default: OPTIONS['worker_queues'], which defaults to '*'."
            ),
        )
        parser.add_argument(
            "--concurrency",
            "-c",
            type=runtime_option("concurrency", int),
            help="Jobs to run at once (default: OPTIONS['concurrency'], 32).",
        )
        parser.add_argument(
            "--poll-interval",
            type=runtime_option("poll_interval", float),
            help="Seconds between looks for ready jobs (default: OPTIONS, 1).",
        )
        parser.add_argument(
            "--min-job-interval",
            type=runtime_option("min_job_interval", float),
            help=(
                "Seconds between two jobs this worker takes, one at a time "
                "(default: OPTIONS, 0: no limit)."
            ),
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=runtime_option("shutdown_timeout", float),
            help="Seconds running jobs get to finish when stopping (default: 10).",
        )
        parser.add_argument(
            "--backend",
            default="default",
            help="The TASKS alias to work for (default: 'default').",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Exit once no job is ready and none is running.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._configure_logging(options["verbosity"])
        runtime = Runtime(
            options["backend"],
            mode="standalone",
            exit_when_empty=options["burst"],
            **self.option_overrides(options),
        )
        signals_received = 0

        def on_signal(signum: int, frame: Any) -> None:
            nonlocal signals_received
            signals_received += 1
            immediately = signals_received > 1
            self.stderr.write(
                f"Received {signal.Signals(signum).name}: "
                + ("releasing running jobs now." if immediately else "stopping.")
            )
            runtime.request_stop(immediately=immediately)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        runtime.start()
        # Wake up regularly so signal handlers run promptly in this thread.
        while not runtime.wait(timeout=0.5):
            pass

    def option_overrides(self, options: dict[str, Any]) -> dict[str, Any]:
        """The runtime options the command line sets."""
        overrides: dict[str, Any] = {
            name: options[name]
            for name in (
                "concurrency",
                "poll_interval",
                "min_job_interval",
                "shutdown_timeout",
            )
            if options[name] is not None
        }
        if options["queues"]:
            # Each --queue was parsed alone; together they keep their order.
            overrides["worker_queues"] = tuple(
                dict.fromkeys(sum(options["queues"], ()))
            )
        return overrides

    def _configure_logging(self, verbosity: int) -> None:
        """Show the runtime's logs on stderr unless LOGGING already routes them."""
        levels = {
            "dbqueue_embedded": logging.WARNING if verbosity == 0 else logging.INFO,
            # One line per job start and finish: only when asked for. Below
            # that, nothing: its failure lines repeat dbqueue_embedded.jobs's.
            "django.tasks": logging.INFO if verbosity >= 2 else logging.CRITICAL,
        }
        for name, level in levels.items():
            logger = logging.getLogger(name)
            if verbosity >= 3:
                level = logging.DEBUG
            logger.setLevel(level)
            if not logger.handlers:
                handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(
                    logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
                )
                logger.addHandler(handler)
