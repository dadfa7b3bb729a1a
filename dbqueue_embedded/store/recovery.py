"""Recovery: the claims of processes that stopped heartbeating go back to the queue.

Every runtime sweeps. A process is presumed dead once its last heartbeat is
older than its own ``dead_after`` (stored with its row) on the database's
clock; its row is removed, which
also stops it from claiming (claims require a registered worker). Each job it
still held is then ended through ``finish_claims`` with the token of that
claim, so the sweep and a late outcome of the presumed-dead process can never
both win: whichever is written first ends the claim, the other changes
nothing.

A live but slow job is never recovered: its process keeps heartbeating
whatever the job does. A job whose attempts keep dying with their process
(it exhausts memory, say) is failed after ``max_lost_attempts`` such attempts
instead of being handed out forever.
"""

import uuid
from dataclasses import dataclass

from django.db.models import DateTimeField, Exists, ExpressionWrapper, F, OuterRef
from django.db.models.functions import Now
from django.tasks import TaskResultStatus
from django.tasks.base import TaskError
from django.utils import timezone

from ..exceptions import LOST_ATTEMPT_ERRORS, JobQuarantined, WorkerLost
from ..models import Job, WorkerProcess
from ..results import task_error
from .jobs import finish_claims
from .records import Outcome

# Jobs recovered per statement; a sweep that finds more runs again at once.
RECOVERY_BATCH = 500


@dataclass(frozen=True, slots=True)
class RecoveredJob:
    id: uuid.UUID
    task_path: str
    lost_worker: str
    # READY: back in the queue; FAILED: quarantined.
    status: TaskResultStatus


def remove_dead_processes(*, using: str, backend: str) -> list[str]:
    """Remove the rows of processes silent for longer than their ``dead_after``.

    Returns their ids. The DELETE checks the heartbeat again, so a process
    that beat meanwhile stays.
    """
    stale = WorkerProcess.objects.using(using).filter(
        backend=backend,
        last_heartbeat_at__lt=ExpressionWrapper(
            Now() - F("dead_after"), output_field=DateTimeField()
        ),
    )
    ids = list(stale.values_list("id", flat=True))
    if ids:
        stale.filter(id__in=ids).delete()
    return ids


def recover_lost_claims(
    *, using: str, backend: str, max_lost_attempts: int
) -> list[RecoveredJob]:
    """Hand back the running jobs of workers that are no longer registered."""
    lost = (
        Job.objects.using(using)
        .filter(backend=backend, status=TaskResultStatus.RUNNING)
        .filter(~Exists(WorkerProcess.objects.filter(id=OuterRef("claimed_by"))))
        .values_list("id", "claim_token", "claimed_by", "task_path", "errors")
    )[:RECOVERY_BATCH]
    outcomes = {}
    for job_id, claim_token, worker, task_path, errors in lost:
        outcome = _lost_attempt_outcome(
            job_id, claim_token, worker, errors, max_lost_attempts
        )
        outcomes[job_id] = (outcome, task_path, worker)
    accepted = finish_claims(
        [outcome for outcome, _, _ in outcomes.values()], using=using
    )
    return [
        RecoveredJob(
            id=job_id, task_path=task_path, lost_worker=worker, status=outcome.status
        )
        for job_id, (outcome, task_path, worker) in outcomes.items()
        if job_id in accepted
    ]


def _lost_attempt_outcome(
    job_id: uuid.UUID,
    claim_token: uuid.UUID,
    worker: str,
    errors: list[dict[str, str]],
    max_lost_attempts: int,
) -> Outcome:
    previous = [TaskError(**error) for error in errors]
    lost_attempts = 1 + sum(
        e.exception_class_path in LOST_ATTEMPT_ERRORS for e in previous
    )
    if lost_attempts >= max_lost_attempts:
        error = JobQuarantined(
            f"Worker {worker} stopped heartbeating while running this job: "
            f"{lost_attempts} attempts of the job have now died with their "
            f"process, so it is failed instead of run again "
            f"(max_lost_attempts={max_lost_attempts})."
        )
        status, finished_at = TaskResultStatus.FAILED, timezone.now()
    else:
        error = WorkerLost(
            f"Worker {worker} stopped heartbeating while running this job; "
            "the attempt was interrupted and the job went back to the queue."
        )
        status, finished_at = TaskResultStatus.READY, None
    return Outcome(
        job_id=job_id,
        claim_token=claim_token,
        status=status,
        finished_at=finished_at,
        return_value_json=None,
        errors=[*previous, task_error(error)],
    )
