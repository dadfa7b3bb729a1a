"""A table shaped like the queue's job table, written with the plain ORM.

The single-enqueue benchmark compares ``task.enqueue()`` with
``PlainJob.objects.create()`` of the same columns, indexes and constraints.
"""

import uuid

from django.db import models

from dbqueue_embedded.models import Job


def _renamed(constraint: models.BaseConstraint) -> models.BaseConstraint:
    copy = constraint.clone()
    copy.name = f"plain_{constraint.name[8:]}"
    return copy


class PlainJob(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    backend = models.CharField(max_length=64)
    queue_name = models.CharField(max_length=100)
    task_path = models.TextField()
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(max_length=10, default="READY")
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    run_after = models.DateTimeField(null=True)
    available_at = models.DateTimeField()
    enqueued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True)
    last_attempted_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    return_value = models.JSONField(null=True)
    errors = models.JSONField(default=list)
    worker_ids = models.JSONField(default=list)
    claim_token = models.UUIDField(null=True)
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    cancel_requested_at = models.DateTimeField(null=True)
    unique_key = models.CharField(max_length=255, blank=True, default="")
    unique_until_finished = models.BooleanField(default=False)
    concurrency_key = models.CharField(max_length=255, blank=True, default="")
    concurrency_limit = models.PositiveIntegerField(default=0)
    concurrency_lease = models.DurationField(null=True)

    class Meta:
        indexes = [
            models.Index(
                *index.expressions,
                name=f"plain_{index.name[8:]}",
                condition=index.condition,
            )
            for index in Job._meta.indexes
        ]
        constraints = [_renamed(constraint) for constraint in Job._meta.constraints]
