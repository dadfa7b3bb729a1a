import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dbqueue_embedded.exceptions import CreationHookFailed, InvalidJob
from dbqueue_embedded.management.arguments import (
    add_backend_argument,
    backend_from_options,
)
from dbqueue_embedded.named_jobs import create_job


def _workspace(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(f"--workspace is not valid JSON: {exc}") from None


class Command(BaseCommand):
    help = "Create a job of settings.JOBS."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="The job's name in settings.JOBS.")
        parser.add_argument(
            "--queue_name", default="default", help="Default: 'default'."
        )
        parser.add_argument(
            "--workspace", default="{}", help='A JSON object: \'{"key": "value"}\'.'
        )
        parser.add_argument("--priority", type=int, default=0, help="Default: 0.")
        add_backend_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        backend = backend_from_options(options)
        try:
            job = create_job(
                options["name"],
                workspace=_workspace(options["workspace"]),
                queue_name=options["queue_name"],
                priority=options["priority"],
                backend=backend.alias,
            )
        except (InvalidJob, CreationHookFailed) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Created job {job.name} {job.id} on queue {job.queue_name}.")
