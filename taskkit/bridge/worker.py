"""The worker side: turn a Celery message back into a taskkit run, and record it.

How much is written follows the task's ``track`` level: ``all`` and ``runs``
write the row when the run starts and when it ends; ``failures`` only when it fails.
"""

from __future__ import annotations

import logging
import socket
import traceback
from datetime import datetime
from typing import Any

from celery import Task as CeleryTask
from django.db import close_old_connections
from django.utils import timezone

from ..conf import settings
from ..definition import Source, Task, TaskContext, TaskEvent, Track, normalize_payload
from ..models import RunStatus, TaskRun
from ..registry import get_task
from ..runner import call

logger = logging.getLogger("taskkit.worker")


def track_level(task: Task) -> Track:
    """The task's track level, or the project's default."""
    return task.meta.track or Track(settings.TRACK)


def _context(ctask: CeleryTask[Any, Any], task: Task, fields: dict[str, Any]) -> TaskContext:
    scheduled = fields.get("scheduled_time")
    delivery = getattr(ctask.request, "delivery_info", None) or {}
    run_id = str(fields.get("run_id") or ctask.request.id)

    def report(done: int, total: int) -> None:
        TaskRun.objects.filter(pk=run_id).update(progress_done=done, progress_total=total)

    return TaskContext(
        run_id=run_id,
        attempt=int(fields.get("attempt", 1)),
        queue=str(fields.get("queue") or delivery.get("routing_key") or task.meta.queue),
        source=Source(fields.get("source", Source.WORKER)),
        scheduled_time=datetime.fromisoformat(scheduled) if scheduled else None,
        logger=logging.getLogger(f"taskkit.tasks.{task.name}"),
        progress_reporter=report,
    )


def _worker_name(ctask: CeleryTask[Any, Any]) -> str:
    return str(getattr(ctask.request, "hostname", None) or socket.gethostname())


def run_message(ctask: CeleryTask[Any, Any], payload: Any, context: Any) -> None:
    """Run the taskkit task a Celery message names; re-raise its error so Celery sees it too."""
    close_old_connections()
    task = get_task(ctask.name)
    fields = context if isinstance(context, dict) else {}
    plain, _ = normalize_payload(payload, schema=task.meta.schema)
    ctx = _context(ctask, task, fields)
    level = track_level(task)
    row = {
        "name": task.name,
        "queue": ctx.queue,
        "payload": plain,
        "attempt": ctx.attempt,
        "source": ctx.source,
        "worker": _worker_name(ctask),
    }
    if level is not Track.FAILURES:
        TaskRun.objects.update_or_create(
            pk=ctx.run_id,
            defaults={**row, "status": RunStatus.RUNNING, "started_at": timezone.now()},
        )
    try:
        result = call(task, TaskEvent(task.name, plain, ctx))
    except Exception as exc:
        TaskRun.objects.update_or_create(
            pk=ctx.run_id,
            defaults={
                **row,
                "status": RunStatus.FAILED,
                "finished_at": timezone.now(),
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            },
        )
        raise
    if level is not Track.FAILURES:
        TaskRun.objects.filter(pk=ctx.run_id).update(
            status=RunStatus.SUCCEEDED, finished_at=timezone.now(), result=result
        )
