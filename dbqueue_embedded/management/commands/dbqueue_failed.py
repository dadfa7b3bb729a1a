import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.tasks import TaskResultStatus

from dbqueue_embedded import store
from dbqueue_embedded.management.arguments import (
    add_backend_argument,
    backend_from_options,
)
from dbqueue_embedded.models import Job


class Command(BaseCommand):
    help = (
        "List failed jobs, retry them (the same job, a new attempt) or discard "
        "(delete) them. Name jobs by id, or select them with --all, --task "
        "and --queue."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "action", nargs="?", default="list", choices=["list", "retry", "discard"]
        )
        parser.add_argument("ids", nargs="*", metavar="job_id")
        add_backend_argument(parser)
        parser.add_argument(
            "--all", action="store_true", help="Every failed job (with the filters)."
        )
        parser.add_argument("--task", help="Only jobs of this task path.")
        parser.add_argument("--queue", help="Only jobs of this queue.")
        parser.add_argument(
            "--limit", type=int, default=50, help="Jobs to list (default: 50)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        backend = backend_from_options(options)
        jobs = Job.objects.using(backend.database).filter(
            backend=backend.alias, status=TaskResultStatus.FAILED
        )
        if options["task"]:
            jobs = jobs.filter(task_path=options["task"])
        if options["queue"]:
            jobs = jobs.filter(queue_name=options["queue"])
        requested = _job_ids(options["ids"])
        if requested:
            jobs = jobs.filter(id__in=requested)
        action = options["action"]
        if action == "list":
            self._list(jobs.order_by("-finished_at")[: options["limit"]])
            return
        if not options["ids"] and not options["all"]:
            raise CommandError(f"Name the jobs to {action}, or pass --all.")
        if options["ids"] and options["all"]:
            raise CommandError("Pass job ids or --all, not both.")
        ids = list(jobs.values_list("id", flat=True))
        missing = set(requested) - set(ids)
        if missing:
            raise CommandError(
                "Not failed jobs of this backend (nothing was changed): "
                + ", ".join(sorted(map(str, missing)))
            )
        change = (
            store.retry_failed_jobs if action == "retry" else store.discard_failed_jobs
        )
        changed = change(ids, using=backend.database)
        verb = "Retried" if action == "retry" else "Discarded"
        self.stdout.write(f"{verb} {len(changed)} failed job(s).")

    def _list(self, jobs: Any) -> None:
        found = False
        for job in jobs:
            found = True
            last = job.errors[-1]["exception_class_path"] if job.errors else "?"
            self.stdout.write(
                f"{job.id}  {job.finished_at:%Y-%m-%d %H:%M:%S}  {job.queue_name}  "
                f"{job.task_path}  {last}"
            )
        if not found:
            self.stdout.write("No failed jobs.")


def _job_ids(values: list[str]) -> list[uuid.UUID]:
    ids = []
    for value in values:
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            raise CommandError(f"{value!r} is not a job id.") from None
    return ids
