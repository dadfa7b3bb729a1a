from typing import Any

from django.core.management.base import BaseCommand

from dbqueue_embedded.management.arguments import (
    add_backend_argument,
    backend_from_options,
)
from dbqueue_embedded.named_jobs import get_queue_depths


class Command(BaseCommand):
    help = (
        "Print the jobs waiting in each queue as one log-friendly line: "
        "event=queue_depths default=2 emails=0"
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "queue_name",
            nargs="*",
            default=["default"],
            help="Queues to report, in this order (default: 'default').",
        )
        parser.add_argument(
            "--exclude_future_jobs",
            action="store_true",
            help="Leave out jobs whose run_after (or retry delay) is still ahead.",
        )
        add_backend_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        backend = backend_from_options(options)
        depths = get_queue_depths(
            exclude_future_jobs=options["exclude_future_jobs"], backend=backend.alias
        )
        counts = " ".join(
            f"{name}={depths.get(name, 0)}" for name in options["queue_name"]
        )
        self.stdout.write(f"event=queue_depths {counts}")
