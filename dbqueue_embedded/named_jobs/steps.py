"""Running one step of a named job, with its hooks, as django-db-queue does.

In order: ``pre_task_hook(job)``, the step ``step(job)``, then on success the
job moves on (READY at the next step, or COMPLETED after the last); on
failure (of the pre-task hook or the step) it is FAILED at that step and
``failure_hook(job, exception)`` runs. ``post_task_hook(job)`` always runs
last and sees the state the job is about to be saved with.

Where django-db-queue left a job stuck or lost an error, this records it:
a failure hook that raises keeps the job FAILED with both errors recorded;
a post-task hook that raises is logged and changes nothing; a workspace
that cannot be stored as JSON fails the step. The workspace is saved after
every step, failed or not, in the same write as the job's new state.
"""

import logging

from django.tasks import TaskResultStatus
from django.utils import timezone

from .. import payloads
from ..exceptions import UnknownTask
from ..models import NamedJob
from ..results import task_error
from ..runtime.outcomes import unknown_task_outcome
from ..store import ClaimedJob, Outcome, error_value
from .config import function, job_definition

logger = logging.getLogger(__name__)


def run_step(job: ClaimedJob, *, unknown_task_releases: int) -> Outcome:
    """Run the step a claimed named job is at; return how the claim ends."""
    try:
        definition = job_definition(job.name)
        following = definition.step_after(job.task_path)
        step = function(job.task_path)
    except UnknownTask as exc:
        # Created by a release whose JOBS differ: leave it for a process
        # that knows it, as for a task this process cannot import.
        logger.warning("Job %s released: %s", job.id, exc)
        return unknown_task_outcome(job, exc, unknown_task_releases)
    named = _as_named_job(job)
    errors = []
    try:
        if definition.pre_task_hook:
            function(definition.pre_task_hook)(named)
        step(named)
        payloads.encode(named.workspace)  # a step's last chance to fail
    except BaseException as exc:  # SystemExit too: it fails the job, not the runtime
        logger.exception(
            "Job %s (%s) failed at step %s.", job.id, job.name, job.task_path
        )
        named.status, named.state = TaskResultStatus.FAILED, NamedJob.STATES.FAILED
        errors.append(exc)
        if definition.failure_hook:
            try:
                function(definition.failure_hook)(named, exc)
            except Exception as hook_exc:
                hook_exc.add_note(
                    f"Raised by the failure hook {definition.failure_hook}; "
                    "the job stays FAILED."
                )
                logger.exception(
                    "The failure hook of job %s (%s) failed.", job.id, job.name
                )
                errors.append(hook_exc)
    else:
        named.task_path = following or job.task_path
        named.status, named.state = (
            (TaskResultStatus.READY, NamedJob.STATES.READY)
            if following
            else (TaskResultStatus.SUCCESSFUL, NamedJob.STATES.COMPLETED)
        )
    if definition.post_task_hook:
        try:
            function(definition.post_task_hook)(named)
        except Exception:
            logger.exception(
                "The post-task hook of job %s (%s) failed; the job's outcome stands.",
                job.id,
                job.name,
            )
    return _outcome(job, named, errors)


def _as_named_job(job: ClaimedJob) -> NamedJob:
    """The job as steps and hooks receive it."""
    named = NamedJob(
        id=job.id,
        backend=job.backend,
        name=job.name,
        queue_name=job.queue_name,
        task_path=job.task_path,
        priority=job.priority,
        workspace=job.workspace if job.workspace is not None else {},
        run_after=job.run_after,
        available_at=job.available_at,
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        last_attempted_at=job.last_attempted_at,
        status=TaskResultStatus.RUNNING,
        errors=list(map(error_value, job.errors)),
        worker_ids=job.worker_ids,
        claim_token=job.claim_token,
    )
    named._state.adding = False
    named.state = NamedJob.STATES.PROCESSING
    return named


def _outcome(job: ClaimedJob, named: NamedJob, errors: list[BaseException]) -> Outcome:
    try:
        workspace_json = payloads.encode(named.workspace)
    except (TypeError, ValueError) as exc:
        # The last stored workspace stays. Unless the step failed already (for
        # this reason, or another), it is a hook's doing: the job fails.
        logger.warning("The workspace of job %s is not JSON: %s", job.id, exc)
        if not errors:
            exc.add_note("The workspace could not be saved as JSON; it was left as is.")
            errors.append(exc)
        workspace_json = None
    status = TaskResultStatus.FAILED if errors else named.status
    return Outcome(
        job_id=job.id,
        claim_token=job.claim_token,
        status=status,
        finished_at=None if status == TaskResultStatus.READY else timezone.now(),
        return_value_json=None,
        errors=[*job.errors, *map(task_error, errors)],
        # A failed job stays at the step that failed.
        task_path=None if errors else named.task_path,
        workspace_json=workspace_json,
    )
