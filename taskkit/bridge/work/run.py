"""The worker side: turn a Celery message back into a taskkit run, and record it.

How much is written follows the task's ``track`` level: ``all`` and ``runs``
write the row when the run starts and when it ends (``runs`` through the
:mod:`recorder <taskkit.bridge.work.recorder>`, which skips the start of short runs
and batches the ends); ``failures`` only when it fails. A failure the retry
policy covers becomes a delayed run (a row the scheduler promotes after the
backoff), so every attempt stays visible.
"""

from __future__ import annotations

import functools
import logging
import random
import socket
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar

from celery import Task as CeleryTask
from django.db import InterfaceError, OperationalError, close_old_connections
from django.utils import timezone

from ...conf import settings
from ...definition import (
    Lock,
    Scope,
    Source,
    Task,
    TaskContext,
    TaskEvent,
    Track,
    received_payload,
)
from ...events import Step, emit
from ...exceptions import InvalidMessage, TaskkitError, class_path
from ...models import FINISHED, RunStatus, TaskRun
from ...registry import get_task
from ...runner import call
from .. import broadcast
from ..carrier import task_name
from ..locks import acquire, lock_key, release
from ..track import track_level
from .cancellations import cancelled
from .recorder import recorder, upsert

logger = logging.getLogger("taskkit.worker")

#: How long a run whose job or single-instance lock is held waits before it tries again.
LOCK_RETRY_DELAY = timedelta(seconds=0.5)

#: How long a run waits for an unreachable database (a restart, a failover) before it
#: hands its message back to the broker.
DATABASE_WAIT = 30.0
#: When a message handed back is delivered again.
HAND_BACK_AFTER = 5.0

T = TypeVar("T")


def with_database(
    step: Callable[[], T], hand_back: Callable[[Exception], NoReturn] | None = None
) -> T:
    """``step()``, tried again while the database is unreachable.

    The message of a run is acknowledged when the run starts: a run that raised
    because the database was away would be dropped without a trace. It waits
    instead; a broken connection is closed, and the next try opens another.
    After ``DATABASE_WAIT`` a step before the handler ran calls ``hand_back``,
    which gives the message back to the broker; a step after it (the run's
    outcome) has none and goes on trying, as running the handler again would run
    the task twice.
    """
    deadline = time.monotonic() + DATABASE_WAIT
    pause = 0.1
    while True:
        try:
            return step()
        except (OperationalError, InterfaceError) as exc:
            if hand_back is not None and time.monotonic() >= deadline:
                hand_back(exc)
            logger.warning("the database is unreachable (%s); trying again in %.1f s", exc, pause)
            close_old_connections()
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def hand_back(ctask: CeleryTask[Any, Any], exc: Exception, claim: str = "") -> NoReturn:
    """Give the message back to the broker, to be delivered again shortly.

    Celery's ``retry`` sends the same message (same run id, payload and context)
    with a countdown and acknowledges this one; nothing of the run has happened.
    Its context carries ``claim``, the token of this delivery's claim of the
    run's row: if the claim reached the database unseen, the next delivery
    knows the row as its own.
    """
    logger.warning(
        "%s %s: the database has been unreachable for %.0f s; the message goes back to the broker",
        ctask.name,
        ctask.request.id,
        DATABASE_WAIT,
    )
    args, kwargs = list(ctask.request.args or ()), dict(ctask.request.kwargs or {})
    if claim and isinstance(kwargs.get("context"), dict):
        kwargs["context"] = {**kwargs["context"], "claim": claim}
    elif claim and len(args) > 1 and isinstance(args[1], dict):
        args[1] = {**args[1], "claim": claim}
    raise ctask.retry(args=tuple(args), kwargs=kwargs, exc=exc, countdown=HAND_BACK_AFTER)


def worker_name(ctask: CeleryTask[Any, Any]) -> str:
    """The Celery node name of the worker running ``ctask``."""
    return str(getattr(ctask.request, "hostname", None) or socket.gethostname())


def message_id(fields: dict[str, Any], celery_id: str | None) -> str:
    """The run id the message carries (the Celery task id when the context has none)."""
    return str(fields.get("run_id") or celery_id)


def _row(
    ctask: CeleryTask[Any, Any], task: Task, ctx: TaskContext, sent_id: str, payload: Any
) -> dict[str, Any]:
    """The fields of a run's row that the worker knows from the message."""
    row = {
        "name": task.name,
        "queue": ctx.queue,
        "payload": payload,
        "attempt": ctx.attempt,
        "source": str(ctx.source),
        "worker": worker_name(ctask),
    }
    if task.meta.scope is Scope.ALL:
        row["group_id"] = sent_id
    return row


def _context(
    ctask: CeleryTask[Any, Any], task: Task, fields: dict[str, Any], run_id: str
) -> TaskContext:
    scheduled = fields.get("scheduled_time")
    delivery = getattr(ctask.request, "delivery_info", None) or {}
    if task.meta.scope is Scope.ALL:  # every worker runs it: each run gets its own id
        run_id = broadcast.worker_run_id(run_id, worker_name(ctask))

    def report(done: int, total: int) -> None:
        recorder.written(run_id)
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


def failed_attempt(
    task: Task | None, attempt: int, exc: BaseException, history: list[Any], now: datetime
) -> dict[str, Any]:
    """A run's fields once ``attempt`` failed with ``exc``: the attempt added to its
    ``history``, then its retry scheduled (as the task's policy says) or the run failed."""
    error = f"{type(exc).__name__}: {exc}"
    entry = {
        "attempt": attempt,
        "error": error,
        "exception": class_path(exc),
        "finished_at": now.isoformat(),
    }
    fields: dict[str, Any] = {"error": error, "history": [*history, entry]}
    if task is not None and task.meta.retry.should_retry(attempt, exc):
        due = now + timedelta(seconds=task.meta.retry.delay(attempt))
        fields.update(
            status=RunStatus.SCHEDULED, attempt=attempt + 1, scheduled_for=due, sent_at=None
        )
    else:
        fields.update(status=RunStatus.FAILED, finished_at=now)
    return fields


def _seconds(row: dict[str, Any], until: datetime) -> float | None:
    """How long the run of ``row`` has run at ``until`` (``None`` if its start is not known)."""
    started = row.get("started_at")
    return (until - started).total_seconds() if started is not None else None


def _record_failure(
    task: Task, ctx: TaskContext, row: dict[str, Any], exc: Exception, trace: str | None = None
) -> bool:
    """Record a failed attempt; return whether a retry was scheduled."""
    recorder.written(ctx.run_id)  # a pending RUNNING row must not land after this one
    history = TaskRun.objects.filter(pk=ctx.run_id).values_list("history", flat=True).first()
    now = timezone.now()
    fields = {
        **row,
        "traceback": trace or traceback.format_exc(),
        **failed_attempt(task, ctx.attempt, exc, list(history or []), now),
    }
    upsert(ctx.run_id, fields)
    retried = bool(fields["status"] == RunStatus.SCHEDULED)
    emit(
        Step.RETRIED if retried else Step.FAILED,
        ctx.run_id,
        task.name,
        ctx.queue,
        ctx.attempt,
        duration=_seconds(row, now),
        worker=row["worker"],
        error=fields["error"],
    )
    return retried


def _release_queue_lock(task: Task, payload: dict[str, Any], message_id: str) -> None:
    """The run has left the queue: its payload may be queued again."""
    if Lock.QUEUE in task.meta.locks:
        release(lock_key(Lock.QUEUE, task, payload), message_id)


def _skipped(
    task: Task,
    ctx: TaskContext,
    fields: dict[str, Any],
    row: dict[str, Any],
    *,
    stored: bool,
    redelivered: bool = False,
    claim: datetime | None = None,
) -> bool:
    """Whether to skip the run: cancelled while queued, or this attempt started already.

    A stored run's row tells both, and is claimed: one atomic update, the step's
    last, moves it to ``running`` for this attempt, so of two deliveries of one
    attempt (a scheduler killed after the broker took its batch but before its
    claim committed sends the batch again) only one starts. A delivery the
    broker marks redelivered (a worker's restore, RabbitMQ's requeue) is checked
    against the row too, if one was written. An attempt that finished is left
    as it is; one that started is not run twice unless the task is idempotent.

    ``claim`` (the claim's ``started_at``, the same for every try of this step
    and carried by a handed-back message) tells this delivery's own claim from
    another's: a claim whose answer a cut connection lost is found again.
    """
    claim = claim or timezone.now()
    mine = TaskRun.objects.filter(
        pk=ctx.run_id, attempt=ctx.attempt, status=RunStatus.RUNNING, started_at=claim
    )
    if stored and mine.exists():
        return False
    if (stored or redelivered) and _started_already(task, ctx):
        return True
    rule = cancelled(ctx.run_id, task.name, ctx.queue, row["payload"], fields.get("enqueued_at"))
    if rule is not None:
        error = f"Deleted while queued: {rule}."
        upsert(
            ctx.run_id,
            {**row, "status": RunStatus.CANCELLED, "finished_at": timezone.now(), "error": error},
        )
        emit(
            Step.CANCELLED,
            ctx.run_id,
            task.name,
            ctx.queue,
            ctx.attempt,
            worker=row["worker"],
            error=error,
        )
        return True
    claimed = (
        TaskRun.objects.filter(pk=ctx.run_id, attempt=ctx.attempt)
        .exclude(status__in=(*FINISHED, RunStatus.RUNNING))
        .update(status=RunStatus.RUNNING, worker=row["worker"], started_at=claim)
        if stored
        else 0
    )
    return stored and not claimed and _started_already(task, ctx)  # another delivery won


def _claim(fields: dict[str, Any]) -> datetime:
    """This delivery's claim token: a handed-back message's, or now."""
    carried = fields.get("claim")
    try:
        return datetime.fromisoformat(carried) if isinstance(carried, str) else timezone.now()
    except ValueError:
        return timezone.now()


def _started_already(task: Task, ctx: TaskContext) -> bool:
    """Whether the row says this attempt was cancelled, finished, or (not idempotent) started."""
    found = TaskRun.objects.filter(pk=ctx.run_id).values_list("status", "attempt").first()
    if found is None:
        return False
    status, attempt = found
    if status == RunStatus.CANCELLED:
        logger.info("%s %s was cancelled before it ran; skipped", task.name, ctx.run_id)
        return True
    if attempt != ctx.attempt:
        return False
    if status in FINISHED:
        logger.info("%s %s attempt %s ran already; skipped", task.name, ctx.run_id, attempt)
        return True
    if status == RunStatus.RUNNING and not task.meta.idempotent:
        logger.warning(
            "%s %s attempt %s was delivered again after it started; not run twice "
            "(the task is not idempotent)",
            task.name,
            ctx.run_id,
            attempt,
        )
        return True
    return False


def run_lock_keys(task: Task, payload: dict[str, Any]) -> list[str]:
    """The keys of the locks a run holds while it runs (``job_lock``, ``single_instance``)."""
    kinds = (Lock.JOB, Lock.SINGLE_INSTANCE)
    return [lock_key(kind, task, payload) for kind in kinds if kind in task.meta.locks]


def _take_locks(
    task: Task, ctx: TaskContext, payload: dict[str, Any], message_id: str
) -> list[str] | None:
    """Release the run's queue lock and take its run locks; ``None`` if one is held elsewhere."""
    locks = task.meta.locks
    if not locks:
        return []
    _release_queue_lock(task, payload, message_id)
    held: list[str] = []
    for key in run_lock_keys(task, payload):
        if acquire(key, ctx.run_id, task.meta.lock_timeout) is not None:
            for taken in held:
                release(taken, ctx.run_id)
            return None
        held.append(key)
    return held


def _wait_for_lock(task: Task, ctx: TaskContext, row: dict[str, Any]) -> None:
    """Re-delay a run whose lock is held: it is tried again shortly, not run concurrently."""
    due = timezone.now() + LOCK_RETRY_DELAY * (1 + random.random())  # not for security
    upsert(
        ctx.run_id, {**row, "status": RunStatus.SCHEDULED, "scheduled_for": due, "sent_at": None}
    )
    logger.info("%s %s waits for its lock until %s", task.name, ctx.run_id, due)


#: The arguments of a taskkit message, in order.
MESSAGE_ARGUMENTS = ("payload", "context")


def check_shape(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """:class:`InvalidMessage` unless the arguments are a taskkit message's (payload, context)."""
    extra = sorted(set(kwargs) - set(MESSAGE_ARGUMENTS))
    twice = set(MESSAGE_ARGUMENTS[: len(args)]) & set(kwargs)
    if len(args) > len(MESSAGE_ARGUMENTS) or extra or twice:
        got = ", ".join([f"{len(args)} positional argument(s)"] * bool(args) + extra)
        raise InvalidMessage(
            f"A taskkit message carries a payload and a context, not {got}. "
            "Enqueue with taskkit (enqueue, runtask --enqueue), or send "
            """--kwargs '{"payload": {...}}' with celery call."""
        )


def _unrunnable(
    ctask: CeleryTask[Any, Any], run_id: str, name: str, payload: Any, exc: Exception
) -> None:
    """Record the run of a message that cannot run (task gone, payload or message malformed)."""
    queue = str((getattr(ctask.request, "delivery_info", None) or {}).get("routing_key", ""))
    worker, error = worker_name(ctask), f"{type(exc).__name__}: {exc}"
    row = {
        "name": name,
        "queue": queue,
        "payload": payload if isinstance(payload, dict) else {},
        "worker": worker,
        "status": RunStatus.FAILED,
        "error": error,
        "finished_at": timezone.now(),
    }
    stored = TaskRun.objects.filter(pk=run_id)
    if not stored.update(status=row["status"], error=error, finished_at=row["finished_at"]):
        upsert(run_id, row)
    emit(Step.FAILED, run_id, name, queue, None, worker=worker, error=error)


def run_message(ctask: CeleryTask[Any, Any], *args: Any, **kwargs: Any) -> None:
    """Run the taskkit task a Celery message names; re-raise a final failure so Celery sees it.

    A message that cannot run (its task unknown here, its payload or its shape
    wrong) is recorded as a failed run, so an operator sees it, and raises.
    """
    # Celery's Django fixup closes stale database connections around every task
    values = {**dict(zip(MESSAGE_ARGUMENTS, args, strict=False)), **kwargs}
    context, payload = values.get("context"), values.get("payload", kwargs)
    fields = context if isinstance(context, dict) else {}
    sent_id = message_id(fields, ctask.request.id)
    name = task_name(ctask.name, fields)
    try:
        check_shape(args, kwargs)
        task = get_task(name)
        plain = received_payload(
            payload, schema=task.meta.schema, max_bytes=settings.MAX_PAYLOAD_BYTES
        )
    except TaskkitError as exc:
        with_database(functools.partial(_unrunnable, ctask, sent_id, name, payload, exc))
        raise
    ctx = _context(ctask, task, fields, sent_id)
    # rows are written per the track level, and always where one exists already
    level = track_level(task)
    record = level is not Track.FAILURES or bool(fields.get("stored"))
    row = _row(ctask, task, ctx, sent_id, plain)
    stored = bool(fields.get("stored")) or level is Track.ALL
    claim = _claim(fields)
    give_back = functools.partial(hand_back, ctask, claim=claim.isoformat())
    redelivered = bool((getattr(ctask.request, "delivery_info", None) or {}).get("redelivered"))
    skip = functools.partial(
        _skipped, task, ctx, fields, row, stored=stored, redelivered=redelivered, claim=claim
    )
    if with_database(skip, give_back):
        _release_queue_lock(task, plain, sent_id)
        return
    held = _take_locks(task, ctx, plain, sent_id)
    if held is None:
        _wait_for_lock(task, ctx, row)
        return
    # track="all" rows are written at once; the recorder batches the others in a worker
    started, finished = (
        (upsert, upsert) if level is Track.ALL else (recorder.started, recorder.finished)
    )
    row["started_at"] = timezone.now()
    if record:
        with_database(lambda: started(ctx.run_id, {**row, "status": RunStatus.RUNNING}))
    emit(Step.STARTED, ctx.run_id, task.name, ctx.queue, ctx.attempt, worker=row["worker"])
    try:
        result = call(task, TaskEvent(task.name, plain, ctx))
    except Exception as exc:
        if not with_database(functools.partial(_record_failure, task, ctx, row, exc)):
            raise
        return
    finally:
        for key in held:
            release(key, ctx.run_id)
    done = timezone.now()
    if record:
        final = {
            **row,
            "status": RunStatus.SUCCEEDED,
            "finished_at": done,
            "result": result,
            "error": "",
            "traceback": "",
        }
        with_database(lambda: finished(ctx.run_id, final))
    emit(
        Step.SUCCEEDED,
        ctx.run_id,
        task.name,
        ctx.queue,
        ctx.attempt,
        duration=_seconds(row, done),
        worker=row["worker"],
    )


def record_revoked(ctask: CeleryTask[Any, Any], request: Any, *, terminated: bool) -> None:
    """Tell of a run Celery revoked: its message dropped unrun (deleted while a worker held
    it; the row, if any, was cancelled by whoever deleted it), or its process killed."""
    kwargs = getattr(request, "kwargs", None)
    context = kwargs.get("context") if isinstance(kwargs, dict) else None
    fields = context if isinstance(context, dict) else {}
    attempt = fields.get("attempt")
    emit(
        Step.CANCELLED,
        message_id(fields, getattr(request, "id", None)),
        task_name(ctask.name, fields),
        str(fields.get("queue") or ""),
        attempt if isinstance(attempt, int) else None,
        worker=getattr(request, "hostname", None),
        error="Terminated while running." if terminated else "Revoked while queued.",
    )


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
    try:
        task = get_task(task_name(ctask.name, fields))
    except TaskkitError:
        return
    sent_id = message_id(fields, celery_id)
    ctx = _context(ctask, task, fields, sent_id)
    for key in run_lock_keys(task, payload):
        release(key, ctx.run_id)
    _record_failure(task, ctx, _row(ctask, task, ctx, sent_id, payload), exc, trace)
