"""``manage.py listtasks``: every registered task with its description, queue and schedule."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from taskkit.definition import Task
from taskkit.registry import all_tasks

COLUMNS = ("name", "description", "queue", "schedule", "module")


def describe(task: Task) -> dict[str, Any]:
    """One task as listed: plain JSON values only."""
    return {
        "name": task.name,
        "description": task.description,
        "queue": task.queue,
        "schedule": task.meta.schedule,
        "cron": task.meta.cron,
        "frequency": task.meta.frequency.total_seconds() if task.meta.frequency else None,
        "module": task.module,
        "implemented": task.handler is not None,
    }


class Command(BaseCommand):
    help = "List every registered task."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print a JSON list.")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = [describe(task) for task in all_tasks().values()]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("No tasks registered.")
            return
        table = [[c.upper() for c in COLUMNS]]
        table += [[str(row[c] or "-") for c in COLUMNS] for row in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        for line in table:
            self.stdout.write(
                "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            )
