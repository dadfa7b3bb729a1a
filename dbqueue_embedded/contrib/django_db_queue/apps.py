from django.apps import AppConfig


class DjangoDBQueueCommandsConfig(AppConfig):
    name = "dbqueue_embedded.contrib.django_db_queue"
    label = "dbqueue_django_db_queue"
    verbose_name = "django-db-queue commands"
