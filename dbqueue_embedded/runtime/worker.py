"""The claim loop: claim ready jobs into free slots and start them.

A claim takes at most half of the slots. While claims come back full the
queue is busy, and the loop claims again as soon as half of the slots are
free: one batch runs while the next is being claimed, and no round trip is
paid per freed slot. Otherwise it sleeps until woken or until the poll
interval passes. Wake-ups only shorten the sleep; polling alone finds every
job.

Jobs end in job threads as well as on the loop, so the table of running jobs
is guarded by a lock, and a finishing job wakes the loop only when the loop
is waiting for what it frees.
"""

import asyncio
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress

from .. import store
from ..selectors import QueueSelector
from ..store import ClaimedJob
from .backoff import Backoff
from .executor import JobExecutor
from .web_activity import WebActivity

logger = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        *,
        run_store: Callable[..., Awaitable],
        executor: JobExecutor,
        backend: str,
        selectors: Sequence[QueueSelector],
        worker_id: str,
        concurrency: int,
        poll_interval: float,
        web_activity: WebActivity,
        min_job_interval: float = 0.0,
        exit_when_empty: bool = False,
        writing_outcomes: Callable[[], bool] = lambda: False,
    ) -> None:
        self._run_store = run_store
        self._executor = executor
        self._backend = backend
        self._selectors = selectors
        self._worker_id = worker_id
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._min_job_interval = min_job_interval
        # Loop time of the last claim that got a job (see min_job_interval).
        self._last_job_claimed = -min_job_interval
        self._exit_when_empty = exit_when_empty
        self._writing_outcomes = writing_outcomes
        self._web_activity = web_activity
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        # Each running job, with the asyncio task to cancel it by (async jobs).
        # Keyed by claim: a retry may start while a timed-out attempt runs.
        self._running: dict[
            tuple[uuid.UUID, uuid.UUID], tuple[ClaimedJob, asyncio.Task | None]
        ] = {}
        # While the loop waits for free slots: how many it waits for.
        self._slots_awaited = 0
        self._slots_freed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._woken = asyncio.Event()
        self._claiming = True

    @property
    def running_jobs(self) -> list[ClaimedJob]:
        with self._lock:
            return [job for job, _ in self._running.values()]

    def wake(self) -> None:
        """Look for jobs now instead of at the next poll (loop thread)."""
        self._woken.set()

    def stop_claiming(self) -> None:
        self._claiming = False
        self._woken.set()
        self._slots_freed.set()

    async def run(self) -> None:
        """Claim and start jobs until told to stop (or, in burst mode, empty)."""
        backoff = Backoff(maximum=max(self._poll_interval, 5.0))
        # The most one claim takes, and the free slots it waits for when busy.
        batch = -(-self._concurrency // 2)
        busy = False
        while self._claiming:
            with self._lock:
                free = self._concurrency - len(self._running)
                wanted = batch if busy else 1
                if free < wanted:
                    self._slots_awaited = wanted
                    self._slots_freed.clear()
            if free < wanted:
                await self._slots_freed.wait()
                continue
            await self._web_activity.quiet()
            if self._min_job_interval:
                await self._wait_for_job_interval()
                if not self._claiming:
                    break
            self._woken.clear()
            limit = 1 if self._min_job_interval else min(free, batch)
            # Polls keep a fixed rate: the next is due an interval after this
            # one started, however long it and the jobs' start took.
            polled_at = self._loop.time()
            # Burst mode ends on an empty claim made once every job was over:
            # an outcome still being written may make its job ready again (a
            # retry, a named job's next step).
            settled = self._idle.is_set() and not self._writing_outcomes()
            try:
                jobs = await self._run_store(
                    store.claim_batch,
                    backend=self._backend,
                    selectors=self._selectors,
                    limit=limit,
                    worker_id=self._worker_id,
                )
            except Exception:
                delay = backoff.next_delay()
                logger.exception("Claiming jobs failed; retrying in %.1f s.", delay)
                await self._sleep(delay)
                continue
            backoff.reset()
            if jobs:
                self._last_job_claimed = polled_at
            for job in jobs:
                self._start(job)
            busy = len(jobs) == limit
            if busy:
                continue  # more may be ready
            if self._exit_when_empty and not jobs:
                if settled:
                    return
                if self._idle.is_set():
                    await asyncio.sleep(0.01)  # for the outcomes to be written
                else:
                    await self._idle.wait()
                continue
            await self._sleep(polled_at + self._poll_interval - self._loop.time())

    async def _wait_for_job_interval(self) -> None:
        """Wait until min_job_interval has passed since a job was last claimed.

        Only claims that got a job count: looking and finding none does not
        delay the next job.
        """
        due = self._last_job_claimed + self._min_job_interval
        while self._claiming and (wait := due - self._loop.time()) > 0:
            self._woken.clear()  # enqueues cannot shorten this wait; a stop can
            await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, unless woken first."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), seconds)

    def _start(self, job: ClaimedJob) -> None:
        self._idle.clear()
        with self._lock:
            self._running[job.claim] = (job, None)
        task = self._executor.start(job, self._job_done)
        if task is not None:
            with self._lock:
                if job.claim in self._running:
                    self._running[job.claim] = (job, task)

    def _job_done(self, job: ClaimedJob) -> None:
        """Free the job's slot (any thread)."""
        with self._lock:
            del self._running[job.claim]
            free = self._concurrency - len(self._running)
            idle = not self._running
            wake = idle or (self._slots_awaited and free >= self._slots_awaited)
            if wake:
                self._slots_awaited = 0
        if wake:
            with suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._slots_became_free)

    def _slots_became_free(self) -> None:
        self._slots_freed.set()
        with self._lock:
            if not self._running:
                self._idle.set()

    async def wait_until_idle(self) -> None:
        """Wait until no job runs."""
        await self._idle.wait()

    async def cancel_running(self) -> None:
        """Cancel the async jobs still running; sync jobs cannot be interrupted."""
        with self._lock:
            tasks = [task for _, task in self._running.values() if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
