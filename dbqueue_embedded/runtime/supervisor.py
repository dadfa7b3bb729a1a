"""The runtime: one per process, embedded in a web server or standalone.

It runs on its own asyncio event loop in a dedicated thread, never on a loop
that serves requests, and keeps blocking work off that loop:

- the store thread (one connection) registers the process, heartbeats,
  sweeps and claims;
- the completer thread (one connection) writes outcomes in batches;
- the job threads (at most ``concurrency``) run sync tasks, while async tasks
  run on the runtime's loop;
- the signal thread sends ``task_finished``;
- on PostgreSQL, a listener connection hears other processes' enqueues.

Each part run by the loop (claim loop, completer, heartbeat, recovery sweep,
listener) is supervised: when one crashes it is logged and restarted without
taking the others down, and its state goes out with every heartbeat (see
``dbqueue_health``). The heartbeat also picks up cancel requests for the jobs
running here; the sweep hands the jobs of processes that stopped heartbeating
back to the queue (see ``store.recovery``).

Whoever owns the process (the standalone command, or a server integration)
calls ``start()`` and ``stop()``; the runtime never installs signal handlers.
A runtime runs once: a stopped runtime is not started again.
"""

import asyncio
import functools
import logging
import os
import secrets
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Collection
from contextlib import suppress
from dataclasses import replace
from datetime import timedelta
from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, InterfaceError, connections
from django.tasks import TaskResultStatus
from django.utils import timezone

from .. import recurring, store, wakeups
from ..conf import (
    DEFAULT_CONCURRENCY,
    RuntimeOptions,
    process_dead_after,
    validate_option,
)
from ..metrics.counters import job_counters
from ..named_jobs.config import job_definitions
from ..store import concurrency, processes, recovery, retention
from ..store import recurring as recurring_ticks
from ..wakeups.listener import Listener
from .backoff import Backoff
from .budget import connection_budget, pool_size
from .completer import Completer
from .executor import JobExecutor
from .outcomes import released_outcome
from .threads import ThreadPool
from .web_activity import web_requests
from .worker import Worker

logger = logging.getLogger("dbqueue_embedded.runtime")

# Seconds to wait for the last outcomes to be written when stopping.
FINAL_WRITE_TIMEOUT = 10.0
# Seconds a supervised part must have run for its crash to count as isolated.
HEALTHY_RUN = 10.0


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


class Runtime:
    """Claims and runs jobs of one task backend until stopped."""

    def __init__(
        self,
        backend_alias: str = "default",
        *,
        mode: Literal["standalone", "embedded"] = "standalone",
        web_threads: int = 0,
        exit_when_empty: bool = False,
        **option_overrides: Any,
    ) -> None:
        from ..backend import queue_backend

        backend = queue_backend(backend_alias)
        if backend.option_errors:
            raise ImproperlyConfigured(" ".join(backend.option_errors))
        job_definitions()  # a runtime does not start with broken JOBS
        try:
            overrides = {
                name: validate_option(name, value)
                for name, value in option_overrides.items()
            }
        except ValueError as exc:
            raise ImproperlyConfigured(str(exc)) from exc
        self.backend_alias = backend_alias
        self.backend_class = type(backend)
        self.using = backend.database
        self.vendor = connections[self.using].vendor
        options = replace(backend.runtime_options, **overrides)
        if options.concurrency is None:
            options = replace(options, concurrency=DEFAULT_CONCURRENCY[mode])
        options = replace(
            options, process_dead_after=process_dead_after(options, self.vendor)
        )
        if options.process_dead_after < 3 * options.heartbeat_interval:
            raise ImproperlyConfigured(
                f"process_dead_after ({options.process_dead_after:g} s) must be at "
                f"least three times heartbeat_interval "
                f"({options.heartbeat_interval:g} s): one late or failed heartbeat "
                "must not make a live process look dead."
            )
        self.options: RuntimeOptions = options
        self.budget = connection_budget(
            concurrency=options.concurrency, web_threads=web_threads, vendor=self.vendor
        )
        self._pool_size = pool_size(connections[self.using].settings_dict)
        self.mode = mode
        self.worker_id = new_worker_id()
        self._exit_when_empty = exit_when_empty
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._release_now: asyncio.Event | None = None
        self._stopped = threading.Event()
        self._worker: Worker | None = None
        self._executor: JobExecutor | None = None
        # The state of each supervised part, reported with every heartbeat.
        self._parts: dict[str, dict[str, Any]] = {}
        # Loop time since which heartbeats have succeeded without a break,
        # and of the last one that succeeded.
        self._beating_since: float | None = None
        self._last_beat = 0.0

    # -- control, from any thread -------------------------------------------

    def start(self) -> None:
        """Start in a background thread. Starting a started runtime does nothing."""
        with self._lock:
            if self._thread is not None:
                return
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._run_thread,
                args=(ready,),
                name="dbqueue-runtime",
                daemon=True,
            )
            self._thread.start()
        ready.wait()

    def stop(self) -> None:
        """Stop gracefully and wait until stopped. Safe to call more than once.

        Claiming stops at once; running jobs get ``shutdown_timeout`` seconds
        to finish; jobs still running then are released back to the queue.
        """
        with self._lock:
            if self._thread is None:
                return
        self.request_stop()
        self._stopped.wait()

    def request_stop(self, *, immediately: bool = False) -> None:
        """Begin a graceful stop without waiting for it.

        With ``immediately``, running jobs are released at once instead of
        after ``shutdown_timeout``.
        """

        def request() -> None:
            self._stop_requested.set()
            if immediately:
                self._release_now.set()

        if self._loop is not None:
            with suppress(RuntimeError):  # the loop already closed
                self._loop.call_soon_threadsafe(request)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the runtime has stopped; True if it has."""
        return self._stopped.wait(timeout)

    @property
    def is_running(self) -> bool:
        return self._thread is not None and not self._stopped.is_set()

    # -- the runtime thread -------------------------------------------------

    def _run_thread(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(ready))
        except Exception:
            logger.exception("The dbqueue_embedded runtime failed.")
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        """Run on the current event loop until stopped; ``ready`` is set once
        ``request_stop()`` can reach it."""
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        self._release_now = asyncio.Event()
        ready.set()
        try:
            await self._main()
        finally:
            self._stopped.set()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._store_thread = ThreadPool(1, name="dbqueue-store")
        completer_thread = ThreadPool(1, name="dbqueue-completer")
        signal_thread = ThreadPool(1, name="dbqueue-signals")
        job_threads = ThreadPool(self.options.concurrency, name="dbqueue-job")
        # The runtime yields its bookkeeping to the web requests of its
        # process (dbqueue_worker serves none, so it never waits).
        completer = Completer(
            functools.partial(_call_store, using=self.using), web_requests
        )
        executor = self._executor = JobExecutor(
            job_threads=job_threads,
            signal_thread=signal_thread,
            submit_outcome=completer.submit,
            submit_progress=completer.submit_progress,
            sender=self.backend_class,
            web_activity=web_requests,
            unknown_task_releases=self.options.unknown_task_releases,
        )
        worker = self._worker = Worker(
            run_store=self._run_store,
            executor=executor,
            backend=self.backend_alias,
            selectors=self.options.worker_queues,
            worker_id=self.worker_id,
            concurrency=self.options.concurrency,
            poll_interval=self.options.poll_interval,
            min_job_interval=self.options.min_job_interval,
            web_activity=web_requests,
            exit_when_empty=self._exit_when_empty,
            writing_outcomes=lambda: completer.writing,
        )
        try:
            if not await self._register():
                return
            wakeups.subscribe(self._on_jobs_enqueued)
            self._log_started()
            await self._check_connections()
            completing = asyncio.create_task(
                self._supervise(
                    "completer",
                    lambda: loop.run_in_executor(completer_thread, completer.run),
                )
            )
            heartbeat = asyncio.create_task(self._supervise("heartbeat", self._beat))
            sweeping = asyncio.create_task(self._supervise("recovery", self._sweep))
            pruning = asyncio.create_task(self._supervise("pruner", self._prune))
            scheduling = asyncio.create_task(
                self._supervise("scheduler", self._schedule)
            )
            listening = None
            if self.vendor == "postgresql":
                listener = Listener(
                    self.using,
                    name=f"dbqueue_embedded listener {self.worker_id}",
                    on_wake=self._on_jobs_enqueued,
                    on_listening=worker.wake,
                )
                listening = asyncio.create_task(
                    self._supervise("listener", listener.run, max_delay=5.0)
                )
            working = asyncio.create_task(self._supervise("worker", worker.run))
            stop_requested = asyncio.create_task(self._stop_requested.wait())
            await asyncio.wait(
                [working, stop_requested], return_when=asyncio.FIRST_COMPLETED
            )
            stop_requested.cancel()
            worker.stop_claiming()
            await working
            await self._release_unfinished(worker, completer)
            completer.close()
            await self._await_final_writes(completing, completer)
            await self._await_signals(signal_thread)
            heartbeat.cancel()
            sweeping.cancel()
            pruning.cancel()
            scheduling.cancel()
            if listening is not None:
                listening.cancel()
            wakeups.unsubscribe(self._on_jobs_enqueued)
            await self._run_store(
                processes.deregister_process, process_id=self.worker_id
            )
        finally:
            for thread in (self._store_thread, completer_thread):
                await loop.run_in_executor(thread, connections.close_all)
            for threads in (
                self._store_thread,
                completer_thread,
                signal_thread,
                job_threads,
            ):
                threads.shutdown(wait=False)
            logger.info(
                "Runtime %s stopped.",
                self.worker_id,
                extra={"worker_id": self.worker_id},
            )

    async def _register(self) -> bool:
        """Register this process, retrying until it works or a stop is requested."""
        backoff = Backoff(first=0.5, maximum=10.0)
        while not self._stop_requested.is_set():
            try:
                await self._register_once()
            except Exception:
                delay = backoff.next_delay()
                logger.exception(
                    "Runtime %s could not register with database %r; "
                    "retrying in %.1f s.",
                    self.worker_id,
                    self.using,
                    delay,
                )
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), delay)
            else:
                return True
        return False

    async def _register_once(self) -> None:
        await self._run_store(
            processes.register_process,
            process_id=self.worker_id,
            backend=self.backend_alias,
            mode=self.mode,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=[str(s) for s in self.options.worker_queues],
            concurrency=self.options.concurrency,
            connection_budget=self.budget.total,
            dead_after=timedelta(seconds=self.options.process_dead_after),
        )
        self._beating_since = self._last_beat = asyncio.get_running_loop().time()

    async def _check_connections(self) -> None:
        """Warn when the queue may need more connections than there are."""
        if self._pool_size is not None and self.budget.from_django > self._pool_size:
            logger.warning(
                "Django's connection pool for database %r holds %d connections, "
                "but this process may need %d (%s). Raise the pool's max_size "
                "or lower the queue's concurrency.",
                self.using,
                self._pool_size,
                self.budget.from_django,
                self.budget,
            )
        alive_within = timedelta(seconds=max(30, 3 * self.options.heartbeat_interval))
        try:
            capacity = await self._run_store(processes.connection_capacity)
            count, demand = await self._run_store(
                processes.connection_demand, alive_within=alive_within
            )
        except Exception:
            logger.exception("Could not check the database's connection limit.")
            return
        if capacity is not None and demand > capacity:
            logger.warning(
                "The %d processes running the queue may open up to %d connections "
                "together, more than the %d PostgreSQL accepts (max_connections "
                "less reserved slots). Lower the queue's concurrency, run fewer "
                "processes, or raise max_connections.",
                count,
                demand,
                capacity,
            )

    async def _supervise(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        max_delay: float = 30.0,
    ) -> None:
        """Run one part of the runtime, restarting it whenever it crashes.

        Restarts back off while the part keeps crashing at once; a part that
        ran for a while before it crashed restarts promptly.
        """
        loop = asyncio.get_running_loop()
        backoff = Backoff(first=0.5, maximum=max_delay)
        part = self._parts[name] = {
            "state": "running",
            "restarts": 0,
            "last_error": None,
        }
        try:
            while True:
                started = loop.time()
                try:
                    await run()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if loop.time() - started > HEALTHY_RUN:
                        backoff.reset()
                    delay = backoff.next_delay()
                    logger.exception(
                        "Runtime %s: part %r crashed; restarting it in %.1f s.",
                        self.worker_id,
                        name,
                        delay,
                    )
                    part.update(
                        state="restarting", last_error=f"{type(exc).__name__}: {exc}"
                    )
                    await asyncio.sleep(delay)
                    part["state"] = "running"
                    part["restarts"] += 1
        finally:
            part["state"] = "stopped"

    def loop_states(self) -> dict[str, dict[str, Any]]:
        """Each supervised part: state (running, restarting, stopped), restarts
        and the last error (the heartbeat stores this for ``dbqueue_health``)."""
        return {name: dict(part) for name, part in self._parts.items()}

    async def _beat(self) -> None:
        """Prove this process alive and pick up cancel requests, every interval.

        A failed beat is logged and the next one comes on time: backing off
        here would make a live process look dead to the others.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.options.heartbeat_interval)
            try:
                await self._beat_once()
            except Exception:
                self._beating_since = None
                logger.exception(
                    "Runtime %s could not record its heartbeat in database %r.",
                    self.worker_id,
                    self.using,
                )
                continue
            self._last_beat = loop.time()
            if self._beating_since is None:
                self._beating_since = self._last_beat
            try:
                await self._pass_on_cancel_requests()
            except Exception:
                logger.exception(
                    "Runtime %s could not look for cancel requests.", self.worker_id
                )

    async def _beat_once(self) -> None:
        registered = await self._run_store(
            processes.record_heartbeat,
            process_id=self.worker_id,
            loops=self.loop_states(),
            metrics=job_counters.snapshot(self.backend_alias),
        )
        if not registered:
            logger.error(
                "Runtime %s was presumed dead by another process (no heartbeat "
                "for %g s): the jobs it was running go back to the queue, and "
                "their outcomes here are discarded. Registering again.",
                self.worker_id,
                self.options.process_dead_after,
            )
            await self._register_once()

    async def _pass_on_cancel_requests(self) -> None:
        if self._worker.running_jobs:
            for job_id in await self._run_store(
                store.cancel_requests, worker_id=self.worker_id
            ):
                self._executor.request_cancel(job_id)

    async def _sweep(self) -> None:
        """Hand the jobs of dead processes back to the queue, every interval.

        Only while this process's own heartbeats are on time, and have been
        for ``process_dead_after``: after a database outage (or while the
        database makes everyone wait) every process looks silent, and the
        others must get time to beat again before anyone judges them.
        """
        loop = asyncio.get_running_loop()
        interval = self.options.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            if (
                self._beating_since is None
                or now - self._beating_since < self.options.process_dead_after
                or now - self._last_beat > 1.5 * interval
            ):
                continue
            try:
                await self._sweep_once()
            except Exception:
                logger.exception(
                    "Runtime %s: the recovery sweep failed; trying again in %g s.",
                    self.worker_id,
                    interval,
                )

    async def _sweep_once(self) -> None:
        for process_id in await self._run_store(
            recovery.remove_dead_processes, backend=self.backend_alias
        ):
            logger.warning(
                "Runtime %s presumes process %s dead: it stopped heartbeating.",
                self.worker_id,
                process_id,
            )
        while True:
            recovered = await self._run_store(
                recovery.recover_lost_claims,
                backend=self.backend_alias,
                max_lost_attempts=self.options.max_lost_attempts,
            )
            for job in recovered:
                if job.status == TaskResultStatus.READY:
                    logger.warning(
                        "Job %s (%s) was running in lost process %s; "
                        "it is back in the queue.",
                        job.id,
                        job.task_path,
                        job.lost_worker,
                        extra=_job_fields(job.id, job.task_path),
                    )
                else:
                    logger.error(
                        "Job %s (%s) failed: %d of its attempts died with their "
                        "process (the last in %s).",
                        job.id,
                        job.task_path,
                        self.options.max_lost_attempts,
                        job.lost_worker,
                        extra=_job_fields(job.id, job.task_path),
                    )
            if len(recovered) < recovery.RECOVERY_BATCH:
                break
        for job_id in await self._run_store(
            concurrency.maintain_leases, backend=self.backend_alias
        ):
            logger.info("Job %s got its concurrency key's lease.", job_id)

    async def _prune(self) -> None:
        """Delete finished jobs past their retention, a small batch at a time."""
        keep = {
            TaskResultStatus.SUCCESSFUL: self.options.keep_successful,
            TaskResultStatus.FAILED: self.options.keep_failed,
        }
        while True:
            await asyncio.sleep(self.options.prune_interval)
            for status, seconds in keep.items():
                if seconds is None:
                    continue
                prune = functools.partial(
                    self._run_store,
                    retention.prune_jobs,
                    backend=self.backend_alias,
                    statuses=[status],
                    finished_before=timezone.now() - timedelta(seconds=seconds),
                )
                while await prune() == retention.PRUNE_BATCH:
                    await asyncio.sleep(0)  # let claims and heartbeats in
            # Tick records only matter while their tick is due.
            await self._run_store(
                recurring_ticks.prune_ticks,
                backend=self.backend_alias,
                before=timezone.now() - timedelta(days=1),
            )

    async def _schedule(self) -> None:
        """Fire the recurring tasks' ticks as they fall due (once across processes)."""
        interval = self.options.recurring_interval
        # A tick not fired within this is missed (nothing ran, or no database).
        missed_after = timedelta(seconds=max(10.0, 3 * interval))
        while True:
            await asyncio.sleep(interval)
            schedules = [
                *self.options.recurring,
                *await self._run_store(
                    recurring.dynamic_schedules, backend=self.backend_alias
                ),
            ]
            if not schedules:
                continue
            for tick in await self._run_store(
                recurring_ticks.fire_due_ticks,
                backend=self.backend_alias,
                schedules=schedules,
                now=recurring.clock(),
                missed_after=missed_after,
            ):
                logger.info(
                    "Recurring task %r: tick of %s %s%s.",
                    tick.key,
                    tick.tick_at.isoformat(),
                    tick.outcome,
                    f" as job {tick.job_id}" if tick.job_id else "",
                )

    async def _release_unfinished(self, worker: Worker, completer: Completer) -> None:
        timeout = self.options.shutdown_timeout
        if worker.running_jobs:
            try:
                await self._run_store(
                    processes.mark_stopping, process_id=self.worker_id
                )
            except Exception:  # only shown to people: never delay the stop
                logger.exception(
                    "Could not record that runtime %s is stopping.", self.worker_id
                )
        waits = [
            asyncio.create_task(worker.wait_until_idle()),
            asyncio.create_task(self._release_now.wait()),
        ]
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        unfinished = worker.running_jobs
        if not unfinished:
            return
        reason = (
            f"Worker {self.worker_id} stopped and released the job after waiting "
            f"{timeout:g} s for it to finish."
        )
        loop = asyncio.get_running_loop()
        released = [loop.create_future() for _ in unfinished]
        for job, future in zip(unfinished, released, strict=True):
            completer.submit(
                released_outcome(job, reason),
                functools.partial(loop.call_soon_threadsafe, future.set_result),
            )
        for job, future in zip(unfinished, released, strict=True):
            if await future:
                logger.warning(
                    "Job %s (%s) did not finish within %g s; released to the queue.",
                    job.id,
                    job.task_path,
                    timeout,
                    extra=_job_fields(job.id, job.task_path),
                )
        await worker.cancel_running()

    async def _await_final_writes(
        self, completing: asyncio.Task, completer: Completer
    ) -> None:
        done, _ = await asyncio.wait([completing], timeout=FINAL_WRITE_TIMEOUT)
        if not done:
            completer.abandon()
            completing.cancel()
            logger.error(
                "Runtime %s could not record its last job outcomes within %g s; "
                "those jobs stay claimed until recovered.",
                self.worker_id,
                FINAL_WRITE_TIMEOUT,
            )

    async def _await_signals(self, signal_thread: ThreadPool) -> None:
        """Wait (boundedly) for task_finished of the jobs that ended."""
        drained = asyncio.wrap_future(signal_thread.submit(lambda: None))
        done, _ = await asyncio.wait([drained], timeout=FINAL_WRITE_TIMEOUT)
        if not done:
            logger.error(
                "task_finished receivers did not return within %g s; "
                "stopping without them.",
                FINAL_WRITE_TIMEOUT,
            )

    async def _run_store(self, function: Callable[..., Any], /, **kwargs: Any) -> Any:
        """Run a store function on the store thread and its connection."""
        return await asyncio.get_running_loop().run_in_executor(
            self._store_thread,
            functools.partial(_call_store, function, using=self.using, **kwargs),
        )

    def _on_jobs_enqueued(
        self, backend: str, queue_names: Collection[str] | None
    ) -> None:
        """Wake the worker if jobs arrived in its queues (None: any queue).

        Called in an enqueuing thread of this process once its transaction
        committed, or on the runtime's loop by the listener.
        """
        if backend != self.backend_alias or self._worker is None:
            return
        selectors = self.options.worker_queues
        if queue_names is None or any(
            s.matches(name) for s in selectors for name in queue_names
        ):
            with suppress(RuntimeError):  # the runtime stopped meanwhile
                self._loop.call_soon_threadsafe(self._worker.wake)

    def _log_started(self) -> None:
        """One line saying what this runtime is, with the same as extras."""
        queues = [str(selector) for selector in self.options.worker_queues]
        logger.info(
            "Runtime %s started: mode=%s backend=%s database=%s (%s) queues=%s "
            "concurrency=%d poll_interval=%gs connections=up to %s",
            self.worker_id,
            self.mode,
            self.backend_alias,
            self.using,
            self.vendor,
            ",".join(queues),
            self.options.concurrency,
            self.options.poll_interval,
            self.budget,
            extra={
                "worker_id": self.worker_id,
                "mode": self.mode,
                "backend": self.backend_alias,
                "database": self.using,
                "vendor": self.vendor,
                "queues": queues,
                "concurrency": self.options.concurrency,
                "connection_budget": self.budget.total,
            },
        )


def _job_fields(job_id: uuid.UUID, task_path: str) -> dict[str, str]:
    """The extras of the runtime's records about one job (as in job records)."""
    return {"job_id": str(job_id), "task": task_path}


def _call_store(function: Callable[..., Any], /, *, using: str, **kwargs: Any) -> Any:
    """Call a store function; after a database error, drop the connection.

    The next call then reconnects, so a restarted database or a killed
    backend costs one failed call, not a broken runtime.
    """
    try:
        store.prepare_runtime_connection(using=using)
        return function(using=using, **kwargs)
    except (DatabaseError, InterfaceError):
        connections[using].close()
        raise
