import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dbqueue_embedded.management.arguments import (
    add_backend_argument,
    backend_from_options,
)
from dbqueue_embedded.queues import QueueInfo
from dbqueue_embedded.store import queues


class Command(BaseCommand):
    help = (
        "List the queues with their size and latency, or pause, resume or clear "
        "queues. 'list' (the default) shows every queue with jobs waiting or "
        "running, and every paused queue."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "action",
            nargs="?",
            default="list",
            choices=["list", "pause", "resume", "clear"],
        )
        parser.add_argument("queues", nargs="*", metavar="queue")
        add_backend_argument(parser)
        parser.add_argument("--json", action="store_true", help="Print JSON (list).")
        parser.add_argument(
            "--yes",
            action="store_true",
            help="Confirm 'clear', which deletes the jobs waiting in the queues.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        backend = backend_from_options(options)
        action, names = options["action"], options["queues"]
        if action == "list":
            self._list(backend, names or None, as_json=options["json"])
            return
        if not names:
            raise CommandError(f"Name the queue(s) to {action}.")
        if action == "clear" and not options["yes"]:
            raise CommandError(
                "'clear' deletes the jobs waiting in the queue(s); "
                "add --yes to confirm."
            )
        try:
            infos = [QueueInfo(name, backend.alias) for name in names]
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        for info in infos:
            if action == "pause":
                done = info.pause()
                self.stdout.write(
                    f"Paused {info.name}." if done else f"{info.name} was paused."
                )
            elif action == "resume":
                done = info.resume()
                self.stdout.write(
                    f"Resumed {info.name}." if done else f"{info.name} was not paused."
                )
            else:
                self.stdout.write(f"Deleted {info.clear()} job(s) from {info.name}.")

    def _list(self, backend: Any, names: list[str] | None, *, as_json: bool) -> None:
        rows = queues.queue_stats(
            using=backend.database, backend=backend.alias, queue_names=names
        )
        if as_json:
            report = [
                {
                    "name": row.name,
                    "ready": row.ready,
                    "scheduled": row.scheduled,
                    "running": row.running,
                    "blocked": row.blocked,
                    "latency_seconds": round(row.latency.total_seconds(), 3),
                    "paused": row.paused,
                }
                for row in rows
            ]
            self.stdout.write(json.dumps(report, indent=2))
            return
        if not rows:
            self.stdout.write("No jobs are waiting or running.")
            return
        width = max(5, *(len(row.name) for row in rows))
        self.stdout.write(
            f"{'queue':<{width}}  {'ready':>7}  {'scheduled':>9}  {'running':>7}  "
            f"{'blocked':>7}  {'latency':>9}  state"
        )
        for row in rows:
            self.stdout.write(
                f"{row.name:<{width}}  {row.ready:>7}  {row.scheduled:>9}  "
                f"{row.running:>7}  {row.blocked:>7}  "
                f"{row.latency.total_seconds():>8.1f}s  "
                + ("PAUSED" if row.paused else "active")
            )
