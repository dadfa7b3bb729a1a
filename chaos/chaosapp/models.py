from django.db import models


class Execution(models.Model):
    """One start of a job's task, written before the task does its work.

    Durable on its own (autocommit), so an attempt killed mid-task still
    leaves its row: the run counts executions per job from this table.
    """

    job_id = models.CharField(max_length=64, db_index=True)
    attempt = models.PositiveIntegerField()
    worker_id = models.CharField(max_length=64)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.job_id} attempt {self.attempt} on {self.worker_id}"
