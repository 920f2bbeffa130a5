"""What ``taskqueue``'s subcommands print: each answer as a JSON value and as text.

Kept apart from the command, which parses, calls ``taskkit.queues`` and
prints one of the two; times are said through :mod:`taskkit.times`, as the
admin and the HTTP API say them. The leading underscore keeps Django from
taking this module for a command.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskkit import queues
from taskkit.queues.health import READINESS
from taskkit.times import iso

if TYPE_CHECKING:
    from datetime import datetime

    from taskkit import RunHandle
    from taskkit.models import TaskRun
    from taskkit.scheduling.periodic import SyncResult

#: What each subcommand returns: a JSON value, and the text printed without --json.
Outcome = tuple[Any, str]


def table(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; no trailing blanks."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def messages_table(found: Sequence[queues.QueuedMessage]) -> str:
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
    return table(rows)


def state(worker: queues.WorkerInfo) -> str:
    """``alive``; ``silent`` (not seen, not swept yet); ``lost`` and when the sweep found it."""
    if worker.lost_at is not None:
        return f"lost {iso(worker.lost_at)}"
    return "alive" if worker.alive else "silent"


def details(found: queues.Details) -> Outcome:
    rows = [["QUEUE", "LENGTH", "TAKEN, NOT STARTED"]]
    rows += [[q.name, str(q.length), str(q.reserved)] for q in found.queues]
    text = (
        f"{table(rows)}\n\nbroker: {found.broker}; delayed: {found.delayed}, "
        f"running: {found.running}, failed: {found.failed}, periodic: {found.periodic}"
    )
    return found.as_json(), text


def health(report: queues.Health) -> Outcome:
    width = max(map(len, READINESS))
    text = "\n".join(
        f"{'ok' if check.ok else 'FAIL':4} {check.name:{width}}  {check.detail}"
        for check in report.checks
    )
    return report.as_json(), text


def workers(found: list[queues.WorkerInfo]) -> Outcome:
    rows = [["WORKER", "HOST", "PID", "QUEUES", "POOL", "ACTIVE", "RESERVED", "SEEN AT", "STATE"]]
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
            state(w),
        ]
        for w in found
    ]
    text = table(rows) if found else "No worker has written a heartbeat in the last day."
    return [w.as_json() for w in found], text


def live_workers(found: list[queues.LiveWorker]) -> Outcome:
    rows = [["WORKER", "RESERVED", "RUNNING"]] + [
        [w.name, str(w.reserved), ", ".join(f"{a['name']} {a['run_id']}" for a in w.active)]
        for w in found
    ]
    text = table(rows) if found else "No worker answered."
    return [w.as_json() for w in found], text


def messages(found: list[queues.QueuedMessage]) -> Outcome:
    return [m.as_json() for m in found], messages_table(found)


def runs_found(found: dict[str, list[Any]]) -> Outcome:
    """``queues.find``'s answer: the queued messages in full, the rest counted."""
    value = {
        "queued": [m.as_json() for m in found["queued"]],
        "held": [m.as_json() for m in found["held"]],
        "delayed": [{"run_id": str(r.pk), "name": r.name, "payload": r.payload,
                     "scheduled_for": iso(r.scheduled_for)} for r in found["delayed"]],
        "running": [{"run_id": str(r.pk), "name": r.name, "payload": r.payload,
                     "worker": r.worker} for r in found["running"]],
    }  # fmt: skip
    text = (
        f"queued:\n{messages_table(found['queued'])}\n\n"
        f"held by workers: {len(value['held'])}, delayed: {len(value['delayed'])}, "
        f"running: {len(value['running'])}"
    )
    return value, text


def removal(removed: Any, dry_run: bool, what: str) -> Outcome:
    """``{"removed": …, "dry_run": …}``; "Removed ``what``", or "Would remove" it."""
    verb = "Would remove" if dry_run else "Removed"
    return {"removed": removed, "dry_run": dry_run}, f"{verb} {what}"


def deleted(removed: int, dry_run: bool, *, listable: bool, name: str, queue: str) -> Outcome:
    """``del``: a broker that cannot list its queues skips the runs instead."""
    value, text = removal(removed, dry_run, f"{removed} message(s).")
    if not listable:
        text = (
            "This broker cannot remove single messages: workers will skip the matching "
            f"runs of {name} queued on {queue} until now."
        )
    return value, text


def delayed_deleted(due: list[datetime], dry_run: bool) -> Outcome:
    times = [str(iso(moment)) for moment in due]
    return removal(
        times, dry_run, f"{len(due)} delayed run(s)" + (f": {', '.join(times)}" if times else ".")
    )


def stopped(run_id: str, *, dry_run: bool) -> Outcome:
    if dry_run:
        return {"stopped": False, "dry_run": True}, f"Would stop run {run_id}."
    return {"stopped": True, "dry_run": False}, f"Stopped run {run_id}: it is cancelled."


def failed(rows: list[TaskRun]) -> Outcome:
    value = [{**row.as_dict(), "finished_at": iso(row.finished_at)} for row in rows]
    lines = [["RUN ID", "NAME", "FINISHED AT", "ERROR"]] + [
        [
            str(row.pk),
            row.name,
            iso(row.finished_at) or "-",
            row.error.splitlines()[0][:80] if row.error else "-",
        ]
        for row in rows
    ]
    return value, table(lines) if rows else "No failed runs."


def retried(handles: list[RunHandle]) -> Outcome:
    return [h.id for h in handles], f"Queued {len(handles)} failed run(s) again."


def synced(result: SyncResult) -> Outcome:
    counts = {"created": result.created, "updated": result.updated, "disabled": result.disabled}
    summary = ", ".join(f"{count} {what}" for what, count in counts.items())
    return counts, f"Periodic tasks synced: {summary}."


def recurrent_enqueued(handle: RunHandle) -> Outcome:
    value = {"id": handle.id, "queue": handle.queue, "deduplicated": handle.deduplicated}
    return value, handle.id + (" (already queued)" if handle.deduplicated else "")


def recurrent_stopped(name: str, removed: int) -> Outcome:
    return {"removed": removed}, f"{name} stopped; {removed} waiting run(s) removed."
