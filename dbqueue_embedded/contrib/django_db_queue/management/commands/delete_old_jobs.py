from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from dbqueue_embedded.management.arguments import (
    add_backend_argument,
    backend_from_options,
)
from dbqueue_embedded.store import retention


class Command(BaseCommand):
    help = (
        "Delete finished jobs (COMPLETED or FAILED) that finished more than "
        "--hours ago. Waiting, running and stopping jobs are never deleted."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--hours",
            type=float,
            default=24.0,
            help="Age in hours, from when the job finished (default: 24; 0: all).",
        )
        add_backend_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        backend = backend_from_options(options)
        if not options["hours"] >= 0:
            raise CommandError("--hours must be zero or more.")
        cutoff = timezone.now() - timedelta(hours=options["hours"])
        deleted = 0
        while batch := retention.prune_jobs(
            using=backend.database,
            backend=backend.alias,
            statuses=retention.FINISHED,
            finished_before=cutoff,
        ):
            deleted += batch
        self.stdout.write(f"Deleted {deleted} old job(s).")
