"""Concurrency limits: at most ``limit`` jobs of one key may run or wait to run.

A job with a concurrency key holds a lease (one of its key's ``limit`` slots,
unique per key) from the moment it may be claimed until it finishes; without
a free slot it waits BLOCKED (or, with ``on_conflict="discard"``, fails at
once). Claims never look at keys: a job that is READY already holds its lease.

When a job finishes, its lease goes to the key's next blocked job that is
due, in order (priority, then ``available_at``: run_after or enqueue time). A
job scheduled for later waits BLOCKED, without a lease, until it is due.
Retries and jobs handed back by a stopping or dead process keep their lease.
The recovery sweep (``maintain_leases``)
releases the leases whose job ended without releasing them or waited too
long to be claimed, and promotes blocked jobs wherever a slot is free: that
also covers a job blocked at the very moment the lease it waited for was
released.
"""

import uuid
from collections.abc import Collection
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import (
    Count,
    Exists,
    OuterRef,
)
from django.tasks import TaskResultStatus
from django.utils import timezone

from ..models import BLOCKED, ConcurrencyLease, Job

ACTIVE = (TaskResultStatus.READY, TaskResultStatus.RUNNING)


def acquire_lease(
    *,
    using: str,
    backend: str,
    key: str,
    limit: int,
    job_id: uuid.UUID,
    duration: timedelta,
) -> bool:
    """Take a free slot of ``key`` for ``job_id``; False if all are held."""
    leases = ConcurrencyLease.objects.using(using)
    held = set(leases.filter(backend=backend, key=key).values_list("slot", flat=True))
    for slot in range(limit):
        if slot in held:
            continue
        try:
            with transaction.atomic(using=using):
                leases.create(
                    backend=backend,
                    key=key,
                    slot=slot,
                    job_id=job_id,
                    expires_at=timezone.now() + duration,
                )
        except IntegrityError:
            continue  # taken meanwhile by another process
        return True
    return False


def release_leases(job_ids: Collection[uuid.UUID], *, using: str) -> list[uuid.UUID]:
    """Release the leases of ended jobs; promote the next jobs of their keys.

    Returns the ids of the jobs promoted to READY.
    """
    leases = ConcurrencyLease.objects.using(using).filter(job_id__in=list(job_ids))
    with transaction.atomic(using=using):
        keys = set(leases.values_list("backend", "key"))
        leases.delete()
        return [
            job_id
            for backend, key in sorted(keys)
            for job_id in promote_blocked(using=using, backend=backend, key=key)
        ]


def promote_blocked(*, using: str, backend: str, key: str) -> list[uuid.UUID]:
    """Give free slots of ``key`` to its blocked jobs, in order; return their ids."""
    from .jobs import wake_up  # jobs imports this module

    promoted = []
    with transaction.atomic(using=using):
        while True:
            job = (
                Job.objects.using(using)
                .select_for_update(skip_locked=True)
                .filter(
                    backend=backend,
                    concurrency_key=key,
                    status=BLOCKED,
                    available_at__lte=timezone.now(),
                )
                .order_by("-priority", "available_at", "id")
                .values("id", "queue_name", "concurrency_limit", "concurrency_lease")
                .first()
            )
            if job is None or not acquire_lease(
                using=using,
                backend=backend,
                key=key,
                limit=job["concurrency_limit"],
                job_id=job["id"],
                duration=job["concurrency_lease"],
            ):
                break
            Job.objects.using(using).filter(id=job["id"]).update(
                status=TaskResultStatus.READY
            )
            promoted.append((job["id"], job["queue_name"]))
        if promoted:
            wake_up([(backend, queue_name) for _, queue_name in promoted], using=using)
    return [job_id for job_id, _ in promoted]


def maintain_leases(*, using: str, backend: str) -> list[uuid.UUID]:
    """Release stale leases and promote blocked jobs where a slot is free.

    A lease is stale when its job is no longer READY or RUNNING (it ended
    without releasing it), or when its job has waited READY for longer than
    the lease lasts: that job queues for its key again, behind the jobs before
    it. A running job keeps its lease until it ends. Returns the ids of the
    jobs promoted.
    """
    leases = ConcurrencyLease.objects.using(using).filter(backend=backend)
    jobs = Job.objects.using(using)
    blocked = jobs.filter(backend=backend, status=BLOCKED)
    if not leases.exists() and not blocked.exists():
        return []  # the usual case: no write, so no write lock on SQLite
    active = jobs.filter(id=OuterRef("job_id"), status__in=ACTIVE)
    expired = leases.filter(
        expires_at__lt=timezone.now(),
        job_id__in=jobs.filter(backend=backend, status=TaskResultStatus.READY).values(
            "id"
        ),
    )
    for job_id in expired.values_list("job_id", flat=True):
        with transaction.atomic(using=using):
            waiting = jobs.filter(id=job_id, status=TaskResultStatus.READY)
            available_at = waiting.values_list("available_at", flat=True).first()
            # Only while still READY (a job claimed meanwhile keeps its
            # lease), and to the back of its key's line.
            if available_at is not None and waiting.update(
                status=BLOCKED, available_at=max(available_at, timezone.now())
            ):
                leases.filter(job_id=job_id).delete()
    leases.filter(~Exists(active)).delete()
    held = dict(
        leases.values("key").annotate(count=Count("id")).values_list("key", "count")
    )
    keys = blocked.values_list("concurrency_key", "concurrency_limit").distinct()
    return [
        job_id
        for key, limit in keys
        if held.get(key, 0) < limit
        for job_id in promote_blocked(using=using, backend=backend, key=key)
    ]
