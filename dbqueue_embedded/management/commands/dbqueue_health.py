import json
import sys
from typing import Any

from django.core.management.base import BaseCommand
from django.db.models.functions import Now

from dbqueue_embedded.management.arguments import (
    add_backend_argument,
    backend_from_options,
)
from dbqueue_embedded.models import WorkerProcess


class Command(BaseCommand):
    help = (
        "Report the processes running the queue: liveness, last heartbeat and the "
        "state of each internal loop. Exits with 1 if no process runs the queue, "
        "one has stopped heartbeating, or one of their loops is not running."
    )

    def add_arguments(self, parser: Any) -> None:
        add_backend_argument(parser)
        parser.add_argument(
            "--hostname",
            help="Only the processes of this host (as the processes report it).",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print one JSON document."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        backend = backend_from_options(options)
        rows = WorkerProcess.objects.using(backend.database).filter(
            backend=backend.alias
        )
        if options["hostname"]:
            rows = rows.filter(hostname=options["hostname"])
        processes = [
            _process_report(process)
            for process in rows.annotate(now=Now()).order_by("hostname", "pid")
        ]
        healthy = bool(processes) and all(p["healthy"] for p in processes)
        if options["json"]:
            report = {"healthy": healthy, "processes": processes}
            self.stdout.write(json.dumps(report, indent=2, default=str))
        else:
            self._write_text(processes, healthy)
        if not healthy:
            sys.exit(1)

    def _write_text(self, processes: list[dict[str, Any]], healthy: bool) -> None:
        if not processes:
            self.stdout.write("No process runs the queue.")
        for process in processes:
            state = "alive" if process["alive"] else "NOT HEARTBEATING"
            self.stdout.write(
                f"{process['id']} ({process['mode']}, {process['hostname']} "
                f"pid {process['pid']}): {state}, last heartbeat "
                f"{process['seconds_since_heartbeat']:.1f} s ago"
            )
            for name, loop in process["loops"].items():
                error = (
                    f", last error: {loop['last_error']}" if loop["last_error"] else ""
                )
                self.stdout.write(
                    f"  {name}: {loop['state']}, {loop['restarts']} restart(s){error}"
                )
        self.stdout.write("healthy" if healthy else "UNHEALTHY")


def _process_report(process: WorkerProcess) -> dict[str, Any]:
    # Judged as the recovery sweep judges it: by its own dead_after.
    age = (process.now - process.last_heartbeat_at).total_seconds()
    alive = age <= process.dead_after.total_seconds()
    loops = process.loops or {}
    return {
        "id": process.id,
        "mode": process.mode,
        "hostname": process.hostname,
        "pid": process.pid,
        "started_at": process.started_at.isoformat(),
        "last_heartbeat_at": process.last_heartbeat_at.isoformat(),
        "seconds_since_heartbeat": round(age, 3),
        "alive": alive,
        "loops": loops,
        # A process that has not beaten yet reports no loops: starting.
        "healthy": alive
        and all(loop.get("state") == "running" for loop in loops.values()),
    }
