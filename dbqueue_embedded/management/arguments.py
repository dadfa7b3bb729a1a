"""What the queue's management commands share: picking the task backend."""

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django.tasks.exceptions import InvalidTaskBackend

from ..backend import DatabaseBackend, queue_backend


def add_backend_argument(parser: Any) -> None:
    parser.add_argument(
        "--backend",
        default="default",
        help="The TASKS alias to act on (default: 'default').",
    )


def backend_from_options(options: dict[str, Any]) -> DatabaseBackend:
    """The backend ``--backend`` names, or CommandError saying what is wrong."""
    alias = options["backend"]
    try:
        return queue_backend(alias)
    except InvalidTaskBackend:
        raise CommandError(f"There is no task backend {alias!r} in TASKS.") from None
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from None
