"""The store: every change to a job's state happens here, and only here.

Enqueue inserts rows, a worker claims a batch of ready rows, and each claim
ends exactly once: finished, failed, or released back to the queue. A claim
is fenced: it carries a token, and ending it only changes the row while the
row still carries that token. A worker whose claim was taken away (its job
recovered or re-claimed elsewhere) therefore cannot overwrite the job.

Batches travel as a single JSON parameter, so each statement has one fixed
shape whatever the batch size, and rows are encoded by the fast C JSON
encoder rather than bound value by value.
The SQL that differs between databases lives in :mod:`.postgresql` and
:mod:`.sqlite`; everything else is shared.
"""

from .jobs import (
    cancel_job,
    cancel_requests,
    claim_batch,
    claim_statement,
    dialect,
    discard_failed_jobs,
    error_value,
    finish_claims,
    insert_jobs,
    prepare_runtime_connection,
    record_progress,
    retry_failed_jobs,
)
from .records import ClaimedJob, NewJob, Outcome, ProgressUpdate

__all__ = [
    "ClaimedJob",
    "NewJob",
    "Outcome",
    "ProgressUpdate",
    "cancel_job",
    "cancel_requests",
    "claim_batch",
    "claim_statement",
    "dialect",
    "discard_failed_jobs",
    "error_value",
    "finish_claims",
    "insert_jobs",
    "prepare_runtime_connection",
    "record_progress",
    "retry_failed_jobs",
]
