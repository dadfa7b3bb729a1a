from django.apps import AppConfig


class DBQueueEmbeddedConfig(AppConfig):
    name = "dbqueue_embedded"
    verbose_name = "Task queue"
    default_auto_field = "django.db.models.BigAutoField"
