"""``manage.py taskqueue SUBCOMMAND``: the operator's commands over queued and periodic work.

Each subcommand calls the public function of the same name (``taskkit.queues``
and ``taskkit``). Tables by default, ``--json`` for scripts (both shaped in
:mod:`._taskqueue_output`). Destructive ones
(``del``, ``del-run``, ``del-delayed``, ``purge``) ask first unless
``--noinput``, and ``--dry-run`` prints what would go. Exit codes as
``runtask``'s: 0 done, 1 the broker or the database refused (or the answer was
no: a ``health`` check failed), 2 bad invocation (unknown queue, task or check,
bad JSON, bad run id).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from kombu.exceptions import OperationalError

import taskkit
from taskkit import queues
from taskkit.definition import parse_payload
from taskkit.exceptions import (
    BrokerUnavailable,
    InvalidPayload,
    RunNotFound,
    TaskNotFound,
    TaskNotPeriodic,
)
from taskkit.queues.health import OVERDUE, READINESS
from taskkit.scheduling.periodic import sync_periodic
from taskkit.scheduling.recurrent import enqueue_recurrent, stop_recurrent

from . import _taskqueue_output as output
from ._taskqueue_output import Outcome

USAGE_ERROR = 2
USAGE_ERRORS = (
    TaskNotFound,
    TaskNotPeriodic,
    InvalidPayload,
    RunNotFound,
    queues.UnknownQueue,
    ValueError,
)

DESTRUCTIVE = {"del", "del-run", "stop-run", "del-delayed", "purge", "remove-failed", "prune"}
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``30m``, ``12h``, ``7d``."""
    match = DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration (say 90s, 30m, 12h or 7d)")
    try:
        return timedelta(seconds=float(match.group(1)) * UNITS[match.group(2)])
    except OverflowError:
        raise ValueError(f"{text!r} is longer than a duration may be") from None


class Command(BaseCommand):
    help = "Inspect and delete queued work; control periodic tasks; check taskkit's health."
    #: Set by a subcommand whose answer is no: its answer is printed, then the command exits 1.
    failure: str | None = None

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

        def sub(name: str, text: str) -> CommandParser:
            command = commands.add_parser(name, help=text)
            command.add_argument("--json", action="store_true", help="Print JSON.")
            if name in DESTRUCTIVE:
                command.add_argument(
                    "--dry-run", action="store_true", help="Print what would go; remove nothing."
                )
                command.add_argument(
                    "--noinput", "--no-input", action="store_true", help="Do not ask first."
                )
            return command

        sub("details", "Every known queue with its length; delayed, running, failed counts.")
        checking = sub(
            "health", "Check the database, broker, scheduler, workers, consumers, delayed runs."
        )
        checking.add_argument(
            "--check",
            action="append",
            metavar="NAME",
            help=f"Only this check; repeat for more ({', '.join(READINESS)}).",
        )
        checking.add_argument(
            "--overdue",
            metavar="SECONDS",
            help="How late a delayed run may be: seconds, or 90s, 5m (60).",
        )
        listed = sub(
            "workers", "Live workers, and those lost in the last day, by their heartbeats."
        )
        listed.add_argument(
            "--live",
            action="store_true",
            help="Ask the running workers instead (Celery's inspect).",
        )
        listed.add_argument(
            "--timeout", type=float, default=1.0, help="With --live: seconds to wait (1)."
        )
        listing = sub("list", "Show messages of a queue without consuming them.")
        listing.add_argument("queue")
        listing.add_argument("--start", type=int, default=0, help="First position (0: next).")
        listing.add_argument("--stop", type=int, default=49, help="Last position, included.")
        listing.add_argument("--name", help="Only this task's messages.")
        finding = sub("find", "Find queued, delayed and running runs of a task.")
        finding.add_argument("--name", help="Task name.")
        finding.add_argument("--payload", help="Only runs with this payload (a JSON object).")
        deleting = sub("del", "Delete messages of a task from a queue.")
        deleting.add_argument("queue")
        deleting.add_argument("name")
        deleting.add_argument("--payload", help="Only messages with this payload (JSON).")
        deleting.add_argument("--count", type=int, default=0, help="At most N (0: all).")
        sub("del-run", "Delete one run, queued or delayed, by id.").add_argument("run_id")
        sub(
            "stop-run", "Stop a running run: its worker kills the process running it (prefork)."
        ).add_argument("run_id")
        delayed = sub("del-delayed", "Delete the delayed runs of a task.")
        delayed.add_argument("name")
        delayed.add_argument("--payload", help="Only runs with this payload (JSON).")
        delayed.add_argument("--queue", help="Only runs for this queue.")
        sub("purge", "Delete every message of a queue.").add_argument("queue")
        failures = sub("failed", "The latest failed runs, newest first.")
        failures.add_argument("--name", help="Only this task's.")
        failures.add_argument("--limit", type=int, default=50)
        for name, text in (
            ("retry-failed", "Queue failed runs again with their payload."),
            ("remove-failed", "Delete failed runs."),
        ):
            command = sub(name, text)
            command.add_argument("run_id", nargs="?", help="One run; or give --name.")
            command.add_argument("--name", help="Every failed run of this task.")
        pruning = sub("prune", "Delete finished runs older than a duration.")
        pruning.add_argument("--older-than", required=True, help="For example 7d, 12h, 30m.")
        sub("sync-periodic", "Make Beat's taskkit schedules match the code and settings.")
        for name, text in (
            ("enqueue-recurrent", "Run a periodic task now, as one of its ticks would."),
            ("stop-recurrent", "Disable a periodic task's schedules, remove its waiting runs."),
        ):
            sub(name, text).add_argument("name", help="Task name, for example cms:update.")

    def handle(self, *args: Any, **options: Any) -> None:
        subcommand: str = options["subcommand"]
        actions: dict[str, Callable[[dict[str, Any]], Outcome]] = {
            "details": self.details,
            "health": self.health,
            "workers": self.workers,
            "list": self.list,
            "find": self.find,
            "del": self.delete,
            "del-run": self.delete_run,
            "stop-run": self.stop_run,
            "del-delayed": self.delete_delayed,
            "purge": self.purge,
            "failed": self.failed,
            "retry-failed": self.retry_failed,
            "remove-failed": self.remove_failed,
            "prune": self.prune,
            "sync-periodic": self.sync_periodic,
            "enqueue-recurrent": self.enqueue_recurrent,
            "stop-recurrent": self.stop_recurrent,
        }
        try:
            if subcommand in DESTRUCTIVE and not options["dry_run"] and not options["noinput"]:
                self.payload(options)  # a bad --payload is an error before any question
                self.confirm(subcommand, options)
            value, text = actions[subcommand](options)
        except (*USAGE_ERRORS, TypeError) as exc:  # TypeError: neither or both of id and name
            raise CommandError(str(exc), returncode=USAGE_ERROR) from exc
        except (BrokerUnavailable, OperationalError, queues.QueueNotListable) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(value) if options["json"] else text)
        if self.failure is not None:
            raise CommandError(self.failure)

    def confirm(self, subcommand: str, options: dict[str, Any]) -> None:
        target = options.get("queue") or options.get("name") or options.get("run_id")
        try:
            answer = input(f"This will {subcommand} {target}. Type 'yes' to continue: ")
        except EOFError:
            answer = ""
        if answer.strip().lower() != "yes":
            raise CommandError("Nothing deleted.")

    @staticmethod
    def payload(options: dict[str, Any]) -> dict[str, Any] | None:
        text = options.get("payload")
        return None if text is None else parse_payload(text)

    def details(self, options: dict[str, Any]) -> Outcome:
        return output.details(queues.details())

    def health(self, options: dict[str, Any]) -> Outcome:
        overdue = OVERDUE if options["overdue"] is None else parse_duration(options["overdue"])
        report = queues.health(options["check"], overdue=overdue)
        if not report.ok:
            self.failure = f"Unhealthy: {', '.join(report.failed)}."
        return output.health(report)

    def workers(self, options: dict[str, Any]) -> Outcome:
        if options["live"]:
            return self.live_workers(options)
        return output.workers(queues.worker_list())

    def live_workers(self, options: dict[str, Any]) -> Outcome:
        if options["timeout"] <= 0:
            raise ValueError(f"--timeout must be more than 0, not {options['timeout']}")
        return output.live_workers(queues.live_workers(options["timeout"]))

    def list(self, options: dict[str, Any]) -> Outcome:
        found = queues.list(options["queue"], options["start"], options["stop"], options["name"])
        return output.messages(found)

    def find(self, options: dict[str, Any]) -> Outcome:
        return output.runs_found(queues.find(options["name"], self.payload(options)))

    def delete(self, options: dict[str, Any]) -> Outcome:
        removed = queues.delete(
            options["queue"],
            options["name"],
            self.payload(options),
            options["count"],
            dry_run=options["dry_run"],
        )
        return output.deleted(
            removed,
            options["dry_run"],
            listable=queues.listable(),
            name=options["name"],
            queue=options["queue"],
        )

    def delete_run(self, options: dict[str, Any]) -> Outcome:
        found = queues.delete_run(options["run_id"], dry_run=options["dry_run"])
        if not found:
            raise RunNotFound(f"No queued or delayed run {options['run_id']}.")
        return output.removal(1, options["dry_run"], f"run {options['run_id']}.")

    def stop_run(self, options: dict[str, Any]) -> Outcome:
        run_id = options["run_id"]
        if options["dry_run"]:
            return output.stopped(str(queues.find_running(run_id).pk), dry_run=True)
        if not queues.cancel_running(run_id):
            raise CommandError(
                f"Asked its worker to stop run {run_id}, but it is still running: only a "
                "process pool (prefork) can stop one run; a thread pool cannot."
            )
        return output.stopped(run_id, dry_run=False)

    def delete_delayed(self, options: dict[str, Any]) -> Outcome:
        due = queues.delete_delayed(
            options["name"], self.payload(options), options["queue"], dry_run=options["dry_run"]
        )
        return output.delayed_deleted(due, options["dry_run"])

    def purge(self, options: dict[str, Any]) -> Outcome:
        removed = queues.purge(options["queue"], dry_run=options["dry_run"])
        return output.removal(
            removed, options["dry_run"], f"{removed} message(s) from {options['queue']}."
        )

    def failed(self, options: dict[str, Any]) -> Outcome:
        return output.failed(queues.failed(options["name"], options["limit"]))

    def retry_failed(self, options: dict[str, Any]) -> Outcome:
        return output.retried(taskkit.retry_failed(options["run_id"], name=options["name"]))

    def remove_failed(self, options: dict[str, Any]) -> Outcome:
        removed = taskkit.remove_failed(
            options["run_id"], name=options["name"], dry_run=options["dry_run"]
        )
        return output.removal(removed, options["dry_run"], f"{removed} failed run(s).")

    def prune(self, options: dict[str, Any]) -> Outcome:
        removed = queues.prune(parse_duration(options["older_than"]), dry_run=options["dry_run"])
        return output.removal(removed, options["dry_run"], f"{removed} finished run(s).")

    def sync_periodic(self, options: dict[str, Any]) -> Outcome:
        return output.synced(sync_periodic())

    def enqueue_recurrent(self, options: dict[str, Any]) -> Outcome:
        return output.recurrent_enqueued(enqueue_recurrent(options["name"]))

    def stop_recurrent(self, options: dict[str, Any]) -> Outcome:
        return output.recurrent_stopped(options["name"], stop_recurrent(options["name"]))
