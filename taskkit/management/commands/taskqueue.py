"""``manage.py taskqueue SUBCOMMAND``: the operator's commands over periodic and queued work.

Subcommands: ``sync-periodic``, ``enqueue-recurrent NAME``, ``stop-recurrent NAME``.
Each calls the public function of the same name. Exit codes as ``runtask``'s: 0
done, 1 the broker or the database refused, 2 bad invocation (unknown task, a
task that is not periodic).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from taskkit.exceptions import BrokerUnavailable, TaskNotFound, TaskNotPeriodic
from taskkit.scheduling.periodic import sync_periodic
from taskkit.scheduling.recurrent import enqueue_recurrent, stop_recurrent

USAGE_ERROR = 2


class Command(BaseCommand):
    help = "Operate taskkit's queues and schedules."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        for name, text, takes_name in (
            ("sync-periodic", "Make Beat's taskkit schedules match the code and settings.", False),
            ("enqueue-recurrent", "Run a periodic task now, as one of its ticks would.", True),
            (
                "stop-recurrent",
                "Disable a periodic task's schedules, remove its waiting runs.",
                True,
            ),
        ):
            sub = commands.add_parser(name, help=text)
            if takes_name:
                sub.add_argument("name", help="Task name, for example cms:update.")
            sub.add_argument("--json", action="store_true", help="Print the outcome as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        actions: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "sync-periodic": self.sync_periodic,
            "enqueue-recurrent": self.enqueue_recurrent,
            "stop-recurrent": self.stop_recurrent,
        }
        try:
            outcome = actions[options["subcommand"]](options)
        except (TaskNotFound, TaskNotPeriodic) as exc:
            raise CommandError(str(exc), returncode=USAGE_ERROR) from exc
        except BrokerUnavailable as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(outcome))
        else:
            self.stdout.write(outcome["message"])

    def sync_periodic(self, options: dict[str, Any]) -> dict[str, Any]:
        result = sync_periodic()
        counts = {"created": result.created, "updated": result.updated, "disabled": result.disabled}
        summary = ", ".join(f"{count} {what}" for what, count in counts.items())
        return {**counts, "message": f"Periodic tasks synced: {summary}."}

    def enqueue_recurrent(self, options: dict[str, Any]) -> dict[str, Any]:
        handle = enqueue_recurrent(options["name"])
        message = handle.id + (" (already queued)" if handle.deduplicated else "")
        return {"id": handle.id, "queue": handle.queue, "deduplicated": handle.deduplicated,
                "message": message}  # fmt: skip

    def stop_recurrent(self, options: dict[str, Any]) -> dict[str, Any]:
        removed = stop_recurrent(options["name"])
        return {
            "removed": removed,
            "message": f"{options['name']} stopped; {removed} waiting run(s) removed.",
        }
