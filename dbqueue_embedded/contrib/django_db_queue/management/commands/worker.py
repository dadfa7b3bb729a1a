from typing import Any

from django.core.management.base import CommandError

from dbqueue_embedded.conf import validate_option
from dbqueue_embedded.management.commands import dbqueue_worker


class Command(dbqueue_worker.Command):
    help = (
        "django-db-queue's worker: run the jobs of one queue, one at a time, "
        "until stopped (dbqueue_worker, with its options, under another name)."
    )

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "queue_name",
            nargs="?",
            default="default",
            help="The queue to take jobs from (default: 'default').",
        )
        parser.add_argument(
            "--rate_limit",
            type=dbqueue_worker.runtime_option("min_job_interval", float),
            default=0.0,
            metavar="SECONDS",
            help=(
                "Seconds that must pass between two jobs (default: 0, no limit; "
                "django-db-queue's default was 1)."
            ),
        )

    def option_overrides(self, options: dict[str, Any]) -> dict[str, Any]:
        overrides = super().option_overrides(options)
        if "worker_queues" in overrides:
            raise CommandError("Give the queue as queue_name or --queue, not both.")
        overrides["worker_queues"] = validate_option(
            "worker_queues", options["queue_name"]
        )
        overrides.setdefault("concurrency", 1)
        overrides["min_job_interval"] = options["rate_limit"]
        return overrides
