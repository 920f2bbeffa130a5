"""The failure store: failed runs keep their real payload, so they can be run again.

``retry_failed`` re-queues failed runs as they were (same id, same payload, a fresh
retry budget; their failed attempts stay in ``history``); ``remove_failed`` deletes them.
"""

from __future__ import annotations

from functools import partial

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from ..models import RunStatus, TaskRun
from ..registry import get_task
from .send.handle import RunHandle, get_run
from .send.publish import publish_run


def _failed(run_id: object | None, name: str | None) -> QuerySet[TaskRun]:
    if (run_id is None) == (name is None):
        raise TypeError("give a run id or a task name, not both and not neither")
    runs = TaskRun.objects.filter(status=RunStatus.FAILED)
    if run_id is not None:
        return runs.filter(pk=get_run(run_id).pk)
    return runs.filter(name=name)


def retry_failed(run_id: object | None = None, *, name: str | None = None) -> list[RunHandle]:
    """Queue failed runs again with their original payload; return their handles."""
    handles = []
    for row in _failed(run_id, name):
        get_task(row.name)  # the task must still exist
        claimed = TaskRun.objects.filter(pk=row.pk, status=RunStatus.FAILED).update(
            status=RunStatus.QUEUED,
            attempt=1,
            sent_at=timezone.now(),
            finished_at=None,
            scheduled_for=None,
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
