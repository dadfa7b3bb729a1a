"""Keep the queue's tables in their own database.

With ``OPTIONS["database"]`` set on the queue's backend, add the router::

    DATABASE_ROUTERS = ["dbqueue_embedded.routers.QueueRouter"]

Then ``migrate --database <that alias>`` creates the queue's tables there
(and plain ``migrate`` leaves them out of the default database), and ORM
queries on the queue's models (the admin, your own code) go there too. The
store itself always names the database, router or not.
"""

from typing import Any

from django.conf import settings

APP_LABEL = "dbqueue_embedded"


def queue_databases() -> set[str]:
    """The aliases the queue backends name in ``OPTIONS["database"]``."""
    return {
        config["OPTIONS"]["database"]
        for config in settings.TASKS.values()
        if config.get("BACKEND") == "dbqueue_embedded.backend.DatabaseBackend"
        and isinstance(config.get("OPTIONS"), dict)
        and "database" in config["OPTIONS"]
    }


class QueueRouter:
    """Route the queue's models to the database its backends name."""

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        if model._meta.app_label != APP_LABEL:
            return None
        databases = queue_databases()
        # With backends in several databases, each query must name its own.
        return next(iter(databases)) if len(databases) == 1 else None

    db_for_write = db_for_read

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        if app_label != APP_LABEL:
            return None
        databases = queue_databases()
        return db in databases if databases else None
