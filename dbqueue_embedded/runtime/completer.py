"""Writes the outcomes of attempts in batches, from its own thread.

Jobs that end at about the same time share one UPDATE: under load one
statement finishes many jobs, which is where a database queue's throughput
comes from; at low load a batch is a single outcome, written at once.

The completer has its own thread and database connection, so job threads hand
it outcomes without going through the event loop, and finishing jobs never
waits behind a claim.

It also stores the progress running tasks report: the latest value of each
claim, all claims in one UPDATE per round, before the outcomes of that round.
A task's transaction never holds one of these writes, and an outcome that
carries its attempt's last progress makes any update of the same claim
pointless, so that update is dropped.
"""

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from .. import store
from ..store import Outcome, ProgressUpdate
from .backoff import Backoff
from .web_activity import WebActivity

logger = logging.getLogger(__name__)

# Outcomes per statement; more wait for the next statement.
MAX_BATCH = 500
_CLOSE = object()
# Queued when progress arrives with none waiting, to wake run().
_PROGRESS = object()

# Told, once an outcome is written, whether its claim was still held. Called
# on the completer's thread: it must only hand the news on, quickly.
OnWritten = Callable[[bool], None]


class Completer:
    def __init__(self, write: Callable[..., Any], web_activity: WebActivity) -> None:
        # write(store_function, **kwargs) runs a store function on this
        # thread's connection (see Runtime).
        self._write = write
        self._web_activity = web_activity
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Taken from the queue, not yet written: kept here, not in run(), so
        # that a run() restarted after a crash carries on with them.
        self._pending: list[tuple[Outcome, OnWritten]] = []
        # The latest progress update of each claim, not yet written.
        self._progress: dict[tuple[uuid.UUID, uuid.UUID], ProgressUpdate] = {}
        self._progress_lock = threading.Lock()
        self._closing = False
        self._closed = False
        # Outcomes submitted and not yet written (or refused).
        self._unwritten = 0
        self._unwritten_lock = threading.Lock()
        self._abandoned = threading.Event()

    def submit(self, outcome: Outcome, on_written: OnWritten) -> None:
        """Queue an outcome, from any thread.

        ``on_written(True)`` follows once it is written; ``on_written(False)``
        if its claim had been lost (or another outcome for the same claim came
        first, or the completer had closed), in which case nothing changed.
        """
        if self._closed:
            on_written(False)
            return
        with self._unwritten_lock:
            self._unwritten += 1
        self._queue.put((outcome, on_written))

    def submit_progress(self, update: ProgressUpdate) -> None:
        """Queue a running attempt's progress, from any thread.

        It replaces an update of the same claim still waiting. Once the
        completer has closed, updates are dropped: every attempt has its
        outcome by then, which carries its last progress.
        """
        if self._closed:
            return
        with self._progress_lock:
            wake = not self._progress
            self._progress[update.claim] = update
        if wake:
            self._queue.put(_PROGRESS)

    @property
    def writing(self) -> bool:
        """Whether submitted outcomes wait to be written."""
        return self._unwritten > 0

    def run(self) -> None:
        """Write outcomes as they come until closed (blocking; own thread)."""
        backoff = Backoff()
        pending = self._pending
        while pending or not self._closing:
            if not pending:
                item = self._queue.get()
                if item is _CLOSE:
                    self._closing = True
                    continue
                if item is not _PROGRESS:
                    pending.append(item)
            self._web_activity.wait_until_quiet()
            self._closing = self._take_queued(pending) or self._closing
            batch, later = _one_per_job(pending[:MAX_BATCH])
            progress = self._take_progress(pending)
            try:
                if progress:
                    self._write(store.record_progress, updates=progress)
                accepted = (
                    self._write(
                        store.finish_claims, outcomes=[outcome for outcome, _ in batch]
                    )
                    if batch
                    else set()
                )
            except Exception:
                self._put_back_progress(progress)
                if self._abandoned.is_set():
                    break
                delay = backoff.next_delay()
                logger.exception(
                    "Could not record %d job outcome(s) and %d progress update(s); "
                    "retrying in %.1f s.",
                    len(batch),
                    len(progress),
                    delay,
                )
                time.sleep(delay)
                continue
            backoff.reset()
            kept = {id(item) for item in batch}
            waiting = {id(item) for item in later}
            written = pending[:MAX_BATCH]
            del pending[:MAX_BATCH]
            pending[:0] = later
            for item in written:
                outcome, on_written = item
                if id(item) not in waiting:
                    self._tell(
                        on_written, id(item) in kept and outcome.job_id in accepted
                    )
        self._refuse(pending)

    def _take_queued(self, pending: list[tuple[Outcome, OnWritten]]) -> bool:
        """Move what is queued into pending; True if the close marker was seen."""
        while len(pending) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is _CLOSE:
                return True
            if item is not _PROGRESS:
                pending.append(item)
        return False

    def _take_progress(
        self, pending: list[tuple[Outcome, OnWritten]]
    ) -> list[ProgressUpdate]:
        """The progress updates to write now: all but those of claims whose
        pending outcome carries the last progress itself."""
        carried = {
            outcome.claim for outcome, _ in pending if outcome.progress_json is not None
        }
        with self._progress_lock:
            updates, self._progress = self._progress, {}
        return [update for claim, update in updates.items() if claim not in carried]

    def _put_back_progress(self, updates: list[ProgressUpdate]) -> None:
        """Keep updates that could not be written, unless newer ones came,
        and make sure run() comes back for them."""
        if not updates:
            return
        with self._progress_lock:
            for update in updates:
                self._progress.setdefault(update.claim, update)
        self._queue.put(_PROGRESS)

    def _tell(self, on_written: OnWritten, accepted: bool) -> None:
        try:
            on_written(accepted)
        except Exception:
            logger.exception("Handing on a written job outcome failed.")
        with self._unwritten_lock:
            self._unwritten -= 1

    def close(self) -> None:
        """Refuse new outcomes; run() returns once the queued ones are written."""
        self._closed = True
        self._queue.put(_CLOSE)

    def abandon(self) -> None:
        """Stop retrying writes the database keeps refusing; refuse the rest."""
        self._abandoned.set()

    def _refuse(self, pending: list[tuple[Outcome, OnWritten]]) -> None:
        for _, on_written in pending:
            self._tell(on_written, False)
        pending.clear()
        while True:  # outcomes submitted while closing
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _CLOSE:
                self._tell(item[1], False)


def _one_per_job(
    items: Sequence[tuple[Outcome, OnWritten]],
) -> tuple[list[tuple[Outcome, OnWritten]], list[tuple[Outcome, OnWritten]]]:
    """Split outcomes into a batch holding one per job, and those for later.

    A second outcome of the same claim (a job that finished just as it was
    being released) is in neither: it is refused. An outcome of another claim
    of the same job waits for the next statement, so that the ids the
    statement returns tell each claim's fate unambiguously.
    """
    claims: dict[uuid.UUID, uuid.UUID] = {}
    batch, later = [], []
    for item in items:
        job_id, token = item[0].claim
        if job_id not in claims:
            claims[job_id] = token
            batch.append(item)
        elif claims[job_id] != token:
            later.append(item)
    return batch, later
