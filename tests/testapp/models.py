from django.db import models


class Execution(models.Model):
    """A side effect written by a test task, one row per run."""

    job_id = models.CharField(max_length=64, db_index=True)
    label = models.CharField(max_length=100, blank=True)
    pid = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)


class Order(models.Model):
    """Caller data written in the same transaction as an enqueue."""

    number = models.IntegerField()
