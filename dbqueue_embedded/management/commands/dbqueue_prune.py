import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.tasks import TaskResultStatus
from django.utils import timezone

from dbqueue_embedded.management.arguments import (
    add_backend_argument,
    backend_from_options,
)
from dbqueue_embedded.store import retention

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(value: str) -> timedelta:
    """'90', '90s', '30m', '12h' or '7d'."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", value.strip())
    if match is None:
        raise ValueError(value)
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _UNITS[unit or "s"])


class Command(BaseCommand):
    help = (
        "Delete finished jobs. Without --older-than, each outcome is kept as long "
        "as the backend's keep_successful / keep_failed options say (the "
        "runtime prunes the same way on its own)."
    )

    def add_arguments(self, parser: Any) -> None:
        add_backend_argument(parser)
        parser.add_argument(
            "--older-than",
            type=duration,
            help="Delete jobs finished longer ago than this (90s, 30m, 12h, 7d).",
        )
        parser.add_argument(
            "--status",
            choices=["successful", "failed", "all"],
            default="all",
            help="Which finished jobs (default: all).",
        )
        parser.add_argument("--task", help="Only jobs of this task path.")
        parser.add_argument("--queue", help="Only jobs of this queue.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Count, delete nothing."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=retention.PRUNE_BATCH,
            help=f"Jobs per DELETE (default: {retention.PRUNE_BATCH}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        backend = backend_from_options(options)
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        statuses = {
            "successful": [TaskResultStatus.SUCCESSFUL],
            "failed": [TaskResultStatus.FAILED],
            "all": [TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED],
        }[options["status"]]
        keep = {
            TaskResultStatus.SUCCESSFUL: backend.runtime_options.keep_successful,
            TaskResultStatus.FAILED: backend.runtime_options.keep_failed,
        }
        now = timezone.now()
        total = 0
        for status in statuses:
            if options["older_than"] is not None:
                age = options["older_than"]
            elif keep[status] is not None:
                age = timedelta(seconds=keep[status])
            else:
                self.stdout.write(f"{status} jobs are kept forever (keep option None).")
                continue
            filters = {
                "using": backend.database,
                "backend": backend.alias,
                "statuses": [status],
                "finished_before": now - age,
                "task_path": options["task"],
                "queue_name": options["queue"],
            }
            if options["dry_run"]:
                count = retention.finished_jobs(**filters).count()
            else:
                count = 0
                while deleted := retention.prune_jobs(
                    limit=options["batch_size"], **filters
                ):
                    count += deleted
            total += count
            verb = "Would delete" if options["dry_run"] else "Deleted"
            before = f"{now - age:%Y-%m-%d %H:%M:%S}"
            self.stdout.write(
                f"{verb} {count} {status} job(s) finished before {before}."
            )
        if len(statuses) > 1:
            self.stdout.write(f"Total: {total}.")
