from django.apps import AppConfig
from django.core import checks


class DBQueueEmbeddedConfig(AppConfig):
    name = "dbqueue_embedded"
    verbose_name = "Task queue"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks as queue_checks
        from .named_jobs.config import check_jobs

        checks.register(check_jobs)
        queue_checks.register()
