"""Operations on taskkit's run table: delayed, failed and finished runs.

``retry_failed`` re-queues failed runs as they were (same id, same payload, a
fresh retry budget; their failed attempts stay in ``history``);
``remove_failed`` deletes them; ``prune`` deletes finished runs; the delayed
ones can be deleted or sent now.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery import current_app
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from .. import events, times
from ..bridge.send.handle import RunHandle, get_run
from ..bridge.send.publish import publish_run
from ..exceptions import RunNotFound
from ..models import RunStatus, TaskRun
from ..registry import get_task
from ..scheduling.promote import promote_due


def run_uuid(run_id: str | uuid.UUID) -> uuid.UUID:
    """``run_id`` as a UUID; :class:`~taskkit.RunNotFound` if it is none."""
    try:
        return run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))
    except ValueError:
        raise RunNotFound(f"{run_id!r} is not a run id.") from None


def delete_delayed(
    name: str,
    payload: Mapping[str, Any] | None = None,
    queue: str | None = None,
    *,
    dry_run: bool = False,
) -> list[datetime]:
    """Delete the delayed runs of ``name`` (with ``payload``, on ``queue``); return when due."""
    get_task(name)
    rows = TaskRun.objects.scheduled().named(name)
    if queue is not None:
        rows = rows.on_queue(queue)
    doomed = [row for row in rows if payload is None or row.payload == dict(payload)]
    if not dry_run:
        TaskRun.objects.filter(pk__in=[row.pk for row in doomed]).delete()
        for row in doomed:
            tell_deleted(row)
    return sorted(row.scheduled_for for row in doomed if row.scheduled_for is not None)


def tell_deleted(row: TaskRun) -> None:
    """Tell a delayed run an operator deleted as cancelled, once the deletion commits."""
    step = events.Step.CANCELLED
    error = "Deleted while delayed."
    events.emit_on_commit(step, str(row.pk), row.name, row.queue, row.attempt, error=error)


def run_delayed_now(run_id: str | uuid.UUID) -> bool:
    """Send the delayed run ``run_id`` now instead of when due; ``False`` if it is not delayed.

    The run keeps its id: it is made due and promoted as the scheduler would.
    """
    wanted = str(run_uuid(run_id))
    now = timezone.now()
    due = TaskRun.objects.scheduled().filter(pk=wanted)
    if not due.update(scheduled_for=now):
        return False
    promote_due(now)
    return True


def failed(name: str | None = None, limit: int = 50) -> list[TaskRun]:
    """The latest failed runs (of task ``name``), newest first."""
    rows = TaskRun.objects.failed()
    if name is not None:
        rows = rows.named(name)
    return list(rows.order_by("-finished_at")[:limit])


def prune(older_than: timedelta, *, dry_run: bool = False) -> int:
    """Delete finished runs (succeeded, failed, cancelled) older than ``older_than``."""
    if older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    rows = TaskRun.objects.finished().filter(finished_at__lt=times.ago(timezone.now(), older_than))
    return rows.count() if dry_run else rows.delete()[0]


def _failed(run_id: object | None, name: str | None) -> QuerySet[TaskRun]:
    if (run_id is None) == (name is None):
        raise TypeError("give a run id or a task name, not both and not neither")
    runs = TaskRun.objects.failed()
    if name is None:
        return runs.filter(pk=get_run(run_id).pk)
    return runs.named(name)


def retry_failed(run_id: object | None = None, *, name: str | None = None) -> list[RunHandle]:
    """Queue failed runs again with their original payload; return their handles."""
    handles = []
    for row in _failed(run_id, name):
        get_task(row.name)  # the task must still exist
        claimed = (
            TaskRun.objects.failed()
            .filter(pk=row.pk)
            .update(
                status=RunStatus.QUEUED,
                attempt=1,
                restarts=0,
                sent_at=timezone.now(),
                finished_at=None,
                scheduled_for=None,
            )
        )
        if not claimed:
            continue  # someone else retried it first
        row.refresh_from_db()
        transaction.on_commit(partial(publish_run, row))
        handles.append(RunHandle(id=str(row.pk), name=row.name, queue=row.queue))
    return handles


def remove_failed(
    run_id: object | None = None, *, name: str | None = None, dry_run: bool = False
) -> int:
    """Delete failed runs; return how many were deleted (or would be, with ``dry_run``)."""
    runs = _failed(run_id, name)
    return runs.count() if dry_run else runs.delete()[0]


def find_running(run_id: str | uuid.UUID) -> TaskRun:
    """The row of a running run (:class:`RunNotFound` if it is not running)."""
    pk = run_uuid(run_id)
    row = TaskRun.objects.filter(pk=pk, status=RunStatus.RUNNING).first()
    if row is None:
        raise RunNotFound(f"No running run {pk}.")
    return row


#: How long :func:`cancel_running` waits for the worker to record the run as cancelled.
CANCEL_WAIT = 5.0


def cancel_running(run_id: str | uuid.UUID, *, wait: float = CANCEL_WAIT) -> bool:
    """Stop a running run: Celery's ``revoke(terminate=True)``, sent to the worker running it.

    That worker kills the pool process running the run (SIGTERM) and records the
    run as cancelled, releasing its locks. Only a process pool can kill one run:
    a thread pool cannot stop a thread, and the run goes on. Return whether the
    run was recorded as cancelled within ``wait`` seconds.
    """
    row = find_running(run_id)
    pk = row.pk
    current_app.control.revoke(
        str(pk), terminate=True, signal="SIGTERM", destination=[row.worker] if row.worker else None
    )
    deadline = time.monotonic() + wait
    while True:
        if TaskRun.objects.filter(pk=pk, status=RunStatus.CANCELLED).exists():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
