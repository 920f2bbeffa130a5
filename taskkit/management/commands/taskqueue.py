"""``manage.py taskqueue SUBCOMMAND``: the operator's commands over queued and periodic work.

Each subcommand calls the public function of the same name (``taskkit.queues``
and ``taskkit``). Tables by default, ``--json`` for scripts. Destructive ones
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
from taskkit.times import iso

USAGE_ERROR = 2
USAGE_ERRORS = (
    TaskNotFound,
    TaskNotPeriodic,
    InvalidPayload,
    RunNotFound,
    queues.UnknownQueue,
    ValueError,
)
#: What each subcommand returns: a JSON value, and the text printed without --json.
Outcome = tuple[Any, str]

DESTRUCTIVE = {"del", "del-run", "stop-run", "del-delayed", "purge", "remove-failed", "prune"}
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``30m``, ``12h``, ``7d``."""
    match = DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration (say 90s, 30m, 12h or 7d)")
    return timedelta(seconds=float(match.group(1)) * UNITS[match.group(2)])


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _messages(found: list[queues.QueuedMessage]) -> str:
    if not found:
        return "No messages."
    rows = [["POSITION", "RUN ID", "NAME", "ENQUEUED AT", "PAYLOAD"]]
    rows += [
        [
            str(m.position),
            m.run_id,
            m.name or f"(malformed: {m.problem})",
            iso(m.enqueued_at) or "-",
            repr(m.raw)[:200] if m.problem else json.dumps(m.payload, sort_keys=True),
        ]
        for m in found
    ]
    return _table(rows)


def _state(worker: queues.WorkerInfo) -> str:
    """``alive``; ``silent`` (not seen, not swept yet); ``lost`` and when the sweep found it."""
    if worker.lost_at is not None:
        return f"lost {iso(worker.lost_at)}"
    return "alive" if worker.alive else "silent"


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
        found = queues.details()
        rows = [["QUEUE", "LENGTH", "TAKEN, NOT STARTED"]]
        rows += [[q.name, str(q.length), str(q.reserved)] for q in found.queues]
        text = (
            f"{_table(rows)}\n\nbroker: {found.broker}; delayed: {found.delayed}, "
            f"running: {found.running}, failed: {found.failed}, periodic: {found.periodic}"
        )
        return found.as_json(), text

    def health(self, options: dict[str, Any]) -> Outcome:
        overdue = OVERDUE if options["overdue"] is None else parse_duration(options["overdue"])
        report = queues.health(options["check"], overdue=overdue)
        width = max(map(len, READINESS))
        text = "\n".join(
            f"{'ok' if check.ok else 'FAIL':4} {check.name:{width}}  {check.detail}"
            for check in report.checks
        )
        if not report.ok:
            self.failure = f"Unhealthy: {', '.join(report.failed)}."
        return report.as_json(), text

    def workers(self, options: dict[str, Any]) -> Outcome:
        if options["live"]:
            return self.live_workers(options)
        found = queues.worker_list()
        rows = [
            ["WORKER", "HOST", "PID", "QUEUES", "POOL", "ACTIVE", "RESERVED", "SEEN AT", "STATE"]
        ]
        rows += [
            [
                w.name,
                w.host or "-",
                str(w.pid or "-"),
                ",".join(w.queues) or "-",
                f"{w.pool or '?'} {w.concurrency or '?'}",
                str(w.active),
                str(w.reserved),
                str(iso(w.seen_at)),
                _state(w),
            ]
            for w in found
        ]
        text = _table(rows) if found else "No worker has written a heartbeat in the last day."
        return [w.as_json() for w in found], text

    def live_workers(self, options: dict[str, Any]) -> Outcome:
        if options["timeout"] <= 0:
            raise ValueError(f"--timeout must be more than 0, not {options['timeout']}")
        found = queues.live_workers(options["timeout"])
        rows = [["WORKER", "RESERVED", "RUNNING"]] + [
            [w.name, str(w.reserved), ", ".join(f"{a['name']} {a['run_id']}" for a in w.active)]
            for w in found
        ]
        text = _table(rows) if found else "No worker answered."
        return [w.as_json() for w in found], text

    def list(self, options: dict[str, Any]) -> Outcome:
        found = queues.list(options["queue"], options["start"], options["stop"], options["name"])
        return [m.as_json() for m in found], _messages(found)

    def find(self, options: dict[str, Any]) -> Outcome:
        found = queues.find(options["name"], self.payload(options))
        value = {
            "queued": [m.as_json() for m in found["queued"]],
            "held": [m.as_json() for m in found["held"]],
            "delayed": [{"run_id": str(r.pk), "name": r.name, "payload": r.payload,
                         "scheduled_for": iso(r.scheduled_for)} for r in found["delayed"]],
            "running": [{"run_id": str(r.pk), "name": r.name, "payload": r.payload,
                         "worker": r.worker} for r in found["running"]],
        }  # fmt: skip
        text = (
            f"queued:\n{_messages(found['queued'])}\n\n"
            f"held by workers: {len(value['held'])}, delayed: {len(value['delayed'])}, "
            f"running: {len(value['running'])}"
        )
        return value, text

    def delete(self, options: dict[str, Any]) -> Outcome:
        removed = queues.delete(
            options["queue"],
            options["name"],
            self.payload(options),
            options["count"],
            dry_run=options["dry_run"],
        )
        verb = "Would remove" if options["dry_run"] else "Removed"
        text = f"{verb} {removed} message(s)."
        if not queues.listable():
            text = (
                "This broker cannot remove single messages: workers will skip the matching "
                f"runs of {options['name']} queued on {options['queue']} until now."
            )
        return {"removed": removed, "dry_run": options["dry_run"]}, text

    def delete_run(self, options: dict[str, Any]) -> Outcome:
        found = queues.delete_run(options["run_id"], dry_run=options["dry_run"])
        if not found:
            raise RunNotFound(f"No queued or delayed run {options['run_id']}.")
        verb = "Would remove" if options["dry_run"] else "Removed"
        return {"removed": 1, "dry_run": options["dry_run"]}, f"{verb} run {options['run_id']}."

    def stop_run(self, options: dict[str, Any]) -> Outcome:
        run_id = options["run_id"]
        if options["dry_run"]:
            running = queues.find_running(run_id)
            return {"stopped": False, "dry_run": True}, f"Would stop run {running.pk}."
        if not queues.cancel_running(run_id):
            raise CommandError(
                f"Asked its worker to stop run {run_id}, but it is still running: only a "
                "process pool (prefork) can stop one run; a thread pool cannot."
            )
        return {"stopped": True, "dry_run": False}, f"Stopped run {run_id}: it is cancelled."

    def delete_delayed(self, options: dict[str, Any]) -> Outcome:
        due = queues.delete_delayed(
            options["name"], self.payload(options), options["queue"], dry_run=options["dry_run"]
        )
        verb = "Would remove" if options["dry_run"] else "Removed"
        times = [str(iso(moment)) for moment in due]
        text = f"{verb} {len(due)} delayed run(s)" + (f": {', '.join(times)}" if times else ".")
        return {"removed": times, "dry_run": options["dry_run"]}, text

    def purge(self, options: dict[str, Any]) -> Outcome:
        removed = queues.purge(options["queue"], dry_run=options["dry_run"])
        verb = "Would remove" if options["dry_run"] else "Removed"
        text = f"{verb} {removed} message(s) from {options['queue']}."
        return {"removed": removed, "dry_run": options["dry_run"]}, text

    def failed(self, options: dict[str, Any]) -> Outcome:
        rows = queues.failed(options["name"], options["limit"])
        value = [{**row.as_dict(), "finished_at": iso(row.finished_at)} for row in rows]
        table = [["RUN ID", "NAME", "FINISHED AT", "ERROR"]] + [
            [
                str(row.pk),
                row.name,
                iso(row.finished_at) or "-",
                row.error.splitlines()[0][:80] if row.error else "-",
            ]
            for row in rows
        ]
        return value, _table(table) if rows else "No failed runs."

    def retry_failed(self, options: dict[str, Any]) -> Outcome:
        handles = taskkit.retry_failed(options["run_id"], name=options["name"])
        return [h.id for h in handles], f"Queued {len(handles)} failed run(s) again."

    def remove_failed(self, options: dict[str, Any]) -> Outcome:
        removed = taskkit.remove_failed(
            options["run_id"], name=options["name"], dry_run=options["dry_run"]
        )
        verb = "Would remove" if options["dry_run"] else "Removed"
        return {"removed": removed, "dry_run": options["dry_run"]}, (
            f"{verb} {removed} failed run(s)."
        )

    def prune(self, options: dict[str, Any]) -> Outcome:
        removed = queues.prune(parse_duration(options["older_than"]), dry_run=options["dry_run"])
        verb = "Would remove" if options["dry_run"] else "Removed"
        return {"removed": removed, "dry_run": options["dry_run"]}, (
            f"{verb} {removed} finished run(s)."
        )

    def sync_periodic(self, options: dict[str, Any]) -> Outcome:
        result = sync_periodic()
        counts = {"created": result.created, "updated": result.updated, "disabled": result.disabled}
        summary = ", ".join(f"{count} {what}" for what, count in counts.items())
        return counts, f"Periodic tasks synced: {summary}."

    def enqueue_recurrent(self, options: dict[str, Any]) -> Outcome:
        handle = enqueue_recurrent(options["name"])
        value = {"id": handle.id, "queue": handle.queue, "deduplicated": handle.deduplicated}
        return value, handle.id + (" (already queued)" if handle.deduplicated else "")

    def stop_recurrent(self, options: dict[str, Any]) -> Outcome:
        removed = stop_recurrent(options["name"])
        return {"removed": removed}, f"{options['name']} stopped; {removed} waiting run(s) removed."
