"""Recurrent control (actionhero's): run a periodic task now, or stop it altogether."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from ..bridge import RunHandle, enqueue_task
from ..exceptions import TaskNotPeriodic
from ..models import RunStatus, TaskRun
from ..registry import get_task
from .periodic import PREFIX, wanted


def _periodic(name: str) -> None:
    get_task(name)  # TaskNotFound first, with its suggestions
    if not any(periodic.task == name for periodic in wanted()):
        raise TaskNotPeriodic(name)


def enqueue_recurrent(name: str) -> RunHandle:
    """Run periodic task ``name`` now, as a tick of its own would (``scheduledTime`` = now).

    It is an ordinary enqueue: the task's queue, track level and ``queue_lock``
    apply (a run of the same tick payload already queued makes this a no-op).
    """
    _periodic(name)
    now = timezone.now()
    return enqueue_task(get_task(name), {"scheduledTime": now.isoformat()}, scheduled_time=now)


def stop_recurrent(name: str) -> int:
    """Disable ``name``'s schedules and remove its waiting runs; return how many runs.

    Delayed runs (ticks' retries, runs waiting for a lock, ``enqueue_in``) are
    deleted; queued runs that have a row (ticks, ``track="all"``) are cancelled,
    and a worker receiving their message skips them. The schedules stay disabled
    across syncs until an operator enables them again.
    """
    _periodic(name)
    with transaction.atomic():
        PeriodicTask.objects.filter(name__startswith=PREFIX, task=name).update(enabled=False)
        PeriodicTasks.update_changed()
        deleted, _ = TaskRun.objects.scheduled().filter(name=name).delete()
        cancelled = (
            TaskRun.objects.queued()
            .filter(name=name)
            .update(status=RunStatus.CANCELLED, finished_at=timezone.now())
        )
    return deleted + cancelled
