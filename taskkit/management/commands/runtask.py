"""``manage.py runtask NAME``: run a task inline, or queue it; chain runs with ``&&``.

Exit codes: 0 success, 1 the task failed (or has no handler, or the broker is
unreachable), 2 bad invocation (unknown task, a payload that is not a JSON object
or fails the schema, a bad ``--in``/``--at``). With ``--enqueue``, ``--queue``,
``--in`` or ``--at`` the run is queued on Celery and its id printed instead.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from taskkit.conf import settings
from taskkit.definition import Source, Task, normalize_payload, parse_payload
from taskkit.exceptions import (
    BrokerUnavailable,
    InvalidPayload,
    TaskNotFound,
    TaskNotImplemented,
)
from taskkit.registry import get_task
from taskkit.runner import execute

USAGE_ERROR = 2


def parse_when(text: str) -> datetime:
    """``--at``: an ISO 8601 time; without an offset it is read in ``TIME_ZONE``."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(
            f"--at {text!r} is not an ISO 8601 time.", returncode=USAGE_ERROR
        ) from exc
    return timezone.make_aware(when) if timezone.is_naive(when) else when


class Command(BaseCommand):
    help = "Run a task inline by name and print its result (or queue it); exit non-zero on failure."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Task name, for example db:migrate.")
        parser.add_argument("--payload", help="The payload, a JSON object.")
        parser.add_argument(
            "--json", action="store_true", help="Print the result (or run) as JSON."
        )
        queued = parser.add_argument_group("queueing instead of running inline")
        queued.add_argument("--enqueue", action="store_true", help="Queue it on Celery now.")
        queued.add_argument("--queue", help="Queue it on this queue.")
        when = queued.add_mutually_exclusive_group()
        when.add_argument("--in", dest="delay", type=float, metavar="SECONDS", help="Run it later.")
        when.add_argument("--at", dest="when", metavar="ISO8601", help="Run it at this time.")

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["name"]
        try:
            payload = parse_payload(options["payload"]) if options["payload"] is not None else {}
            task = get_task(name)
            limit = settings.MAX_PAYLOAD_BYTES
            normalize_payload(payload, schema=task.meta.schema, max_bytes=limit)
        except (InvalidPayload, TaskNotFound) as exc:
            raise CommandError(str(exc), returncode=USAGE_ERROR) from exc
        queued = options["enqueue"] or options["queue"] is not None or options["delay"] is not None
        if queued or options["when"]:
            self.enqueue(task, payload, options)
            return
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

    def enqueue(self, task: Task, payload: dict[str, Any], options: dict[str, Any]) -> None:
        queue = options["queue"]
        if options["delay"] is not None and not options["delay"] >= 0:
            raise CommandError("--in needs a delay of 0 seconds or more.", returncode=USAGE_ERROR)
        when = parse_when(options["when"]) if options["when"] else None
        try:
            if when is not None:
                handle = task.enqueue_at(when, payload, queue=queue)
            elif options["delay"] is not None:
                handle = task.enqueue_in(options["delay"], payload, queue=queue)
            else:
                handle = task.enqueue(payload, queue=queue)
        except (BrokerUnavailable, TaskNotImplemented) as exc:
            raise CommandError(str(exc)) from exc
        except ValueError as exc:  # an empty --queue
            raise CommandError(str(exc), returncode=USAGE_ERROR) from exc
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {"id": handle.id, "queue": handle.queue, "deduplicated": handle.deduplicated}
                )
            )
        else:
            self.stdout.write(handle.id)
