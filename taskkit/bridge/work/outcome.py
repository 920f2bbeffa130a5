"""How a run's attempt ended, written to its row and told (:func:`~taskkit.events.emit`):
failed (its retry scheduled, or for good), unrunnable, revoked, terminated or killed."""

from __future__ import annotations

import functools
import traceback
from datetime import datetime, timedelta
from typing import Any

from celery import Task as CeleryTask
from django.utils import timezone

from ...definition import Lock, Task, TaskContext
from ...events import Step, emit
from ...exceptions import TaskkitError, class_path
from ...models import RunStatus, TaskRun, storable
from ...registry import get_task
from ..carrier import task_name
from ..locks import lock_key, release
from .delivery import with_database
from .message import message_id, row_id, run_context, run_row, tell, worker_name
from .recorder import fitted, recorder, upsert, write_rows


def failed_attempt(
    task: Task | None, attempt: int, exc: BaseException, history: list[Any], now: datetime
) -> dict[str, Any]:
    """A run's fields once ``attempt`` failed with ``exc``: the attempt added to its
    ``history``, then its retry scheduled (as the task's policy says) or the run failed."""
    retry = task is not None and task.meta.retry.should_retry(attempt, exc)
    error = f"{type(exc).__name__}: {exc}"
    return attempt_failed(task, attempt, error, class_path(exc), history, now, retry=retry)


def attempt_failed(
    task: Task | None,
    attempt: int,
    error: str,
    exception: str,
    history: list[Any],
    now: datetime,
    *,
    retry: bool,
) -> dict[str, Any]:
    """A run's fields once ``attempt`` failed with ``error`` (of the class ``exception``
    names): the attempt added to its ``history``, then its retry scheduled if ``retry``
    (``task``'s policy gives the delay), or the run failed."""
    entry = {
        "attempt": attempt,
        "error": error,
        "exception": exception,
        "finished_at": now.isoformat(),
    }
    fields: dict[str, Any] = {"error": error, "history": [*history, entry]}
    if task is not None and retry:
        due = now + timedelta(seconds=task.meta.retry.delay(attempt))
        fields.update(
            status=RunStatus.SCHEDULED,
            attempt=attempt + 1,
            restarts=0,
            scheduled_for=due,
            sent_at=None,
        )
    else:
        fields.update(status=RunStatus.FAILED, finished_at=now)
    return fields


def seconds(row: dict[str, Any], until: datetime) -> float | None:
    """How long the run of ``row`` has run at ``until`` (``None`` if its start is not known)."""
    started = row.get("started_at")
    return (until - started).total_seconds() if started is not None else None


def record_failure(
    task: Task, ctx: TaskContext, row: dict[str, Any], exc: BaseException, trace: str | None = None
) -> float | None:
    """Record a failed attempt; return in how many seconds its retry is due (``None``: none)."""
    recorder.written(ctx.run_id)  # a pending RUNNING row must not land after this one
    history = TaskRun.objects.filter(pk=ctx.run_id).values_list("history", flat=True).first()
    now = timezone.now()
    fields = {
        **row,
        "traceback": traceback.format_exc() if trace is None else trace,
        **failed_attempt(task, ctx.attempt, exc, list(history or []), now),
    }
    upsert(ctx.run_id, fields)
    due = fields["scheduled_for"] if fields["status"] == RunStatus.SCHEDULED else None
    retried = due is not None
    step = Step.RETRIED if retried else Step.FAILED
    tell(step, task, ctx, row["worker"], duration=seconds(row, now), error=fields["error"])
    return (due - now).total_seconds() if due is not None else None


def run_lock_keys(task: Task, payload: dict[str, Any]) -> list[str]:
    """The keys of the locks a run holds while it runs (``job_lock``, ``single_instance``)."""
    kinds = (Lock.JOB, Lock.SINGLE_INSTANCE)
    return [lock_key(kind, task, payload) for kind in kinds if kind in task.meta.locks]


def refused_row(name: str, queue: str, payload: Any, worker: str, exc: Exception) -> dict[str, Any]:
    """The row of a run the worker refused to run: failed now, with ``exc`` as its error
    (a payload that is no object is left out)."""
    return {  # a hand-made message's text may be what no database stores: made to fit
        "name": fitted("name", name),
        "queue": fitted("queue", queue),
        "payload": payload if isinstance(payload, dict) else {},
        "worker": fitted("worker", worker),
        "status": RunStatus.FAILED,
        "error": storable(f"{type(exc).__name__}: {exc}"),
        "finished_at": timezone.now(),
    }


def unrunnable(
    ctask: CeleryTask[Any, Any], run_id: str, name: str, payload: Any, exc: Exception
) -> None:
    """Record the run of a message that cannot run (task gone, payload or message malformed)."""
    queue = str((getattr(ctask.request, "delivery_info", None) or {}).get("routing_key", ""))
    worker = worker_name(ctask)
    row = refused_row(name, queue, payload, worker, exc)
    error = row["error"]
    stored = TaskRun.objects.filter(pk=run_id)
    if not stored.update(status=row["status"], error=error, finished_at=row["finished_at"]):
        write_rows({run_id: row})  # a payload the database refuses is left out, not the run
    emit(Step.FAILED, run_id, name, queue, None, worker=worker, error=error)


def record_revoked(ctask: CeleryTask[Any, Any], request: Any, *, terminated: bool) -> None:
    """Tell of a run Celery revoked: its message dropped unrun (deleted while a worker held
    it; the row, if any, was cancelled by whoever deleted it), or its process killed."""
    kwargs = getattr(request, "kwargs", None)
    context = kwargs.get("context") if isinstance(kwargs, dict) else None
    fields = context if isinstance(context, dict) else {}
    attempt = fields.get("attempt")
    run_id, name = message_id(fields, getattr(request, "id", None)), task_name(ctask.name, fields)
    error = "Terminated while running." if terminated else "Revoked while queued."
    if terminated:  # an operator stopped it (queues.cancel_running): its process is gone
        sent = kwargs.get("payload") if isinstance(kwargs, dict) else None
        with_database(functools.partial(_record_terminated, run_id, name, sent, error))
    emit(
        Step.CANCELLED,
        run_id,
        name,
        str(fields.get("queue") or ""),
        attempt if isinstance(attempt, int) else None,
        worker=getattr(request, "hostname", None),
        error=error,
    )


def _record_terminated(run_id: str, name: str, payload: Any, error: str) -> None:
    """The run's row cancelled and its locks released, as the killed process cannot."""
    TaskRun.objects.filter(pk=row_id(run_id), status=RunStatus.RUNNING).update(
        status=RunStatus.CANCELLED, error=error, finished_at=timezone.now()
    )
    try:
        task = get_task(name)
    except TaskkitError:
        return
    for key in run_lock_keys(task, payload if isinstance(payload, dict) else {}):
        release(key, run_id)


def record_killed(
    ctask: CeleryTask[Any, Any], celery_id: str, kwargs: dict[str, Any], exc: Exception, trace: str
) -> None:
    """Record a run whose process was killed (hard time limit): failed, or its retry scheduled.

    Runs in the worker's main process, which did not run the task: the run's
    job and single-instance locks are released here, as the run cannot.
    """
    context = kwargs.get("context")
    fields = context if isinstance(context, dict) else {}
    sent = kwargs.get("payload")
    payload: dict[str, Any] = sent if isinstance(sent, dict) else {}
    sent_id = message_id(fields, celery_id)
    try:
        task = get_task(task_name(ctask.name, fields))
        ctx = run_context(ctask, task, fields, sent_id)
    except TaskkitError:
        return
    for key in run_lock_keys(task, payload):
        release(key, ctx.run_id)
    record_failure(task, ctx, run_row(ctask, task, ctx, sent_id, payload), exc, trace)
