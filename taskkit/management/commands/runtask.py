"""``manage.py runtask NAME``: run a task inline; chain runs with ``&&`` in the shell.

Exit codes: 0 success, 1 the task failed (or has no handler), 2 bad invocation
(unknown task, payload that is not a JSON object or fails the schema).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from taskkit.conf import settings
from taskkit.definition import Source, normalize_payload, parse_payload
from taskkit.exceptions import InvalidPayload, TaskNotFound, TaskNotImplemented
from taskkit.registry import get_task
from taskkit.runner import execute

USAGE_ERROR = 2


class Command(BaseCommand):
    help = "Run a task inline by name and print its result; exit non-zero if it fails."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Task name, for example db:migrate.")
        parser.add_argument("--payload", help="The payload, a JSON object.")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["name"]
        try:
            payload = parse_payload(options["payload"]) if options["payload"] is not None else {}
            task = get_task(name)
            normalize_payload(
                payload, schema=task.meta.schema, max_bytes=settings.MAX_PAYLOAD_BYTES
            )
        except (InvalidPayload, TaskNotFound) as exc:
            raise CommandError(str(exc), returncode=USAGE_ERROR) from exc
        try:
            result = execute(task, payload, context={"source": Source.CLI})
        except TaskNotImplemented as exc:
            raise CommandError(str(exc)) from exc
        except Exception as exc:
            if options.get("traceback"):
                raise
            raise CommandError(
                f"Task {name!r} failed: {type(exc).__name__}: {exc} (--traceback shows where)"
            ) from exc
        if options["json"]:
            self.stdout.write(json.dumps(result))
        elif isinstance(result, str):
            self.stdout.write(result)
        elif result is not None:
            self.stdout.write(json.dumps(result, indent=2))
