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
import traceback
from datetime import datetime, timedelta
from typing import Any

from celery import Task as CeleryTask
from celery.exceptions import Retry, WorkerShutdown, WorkerTerminate
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
from ...events import Step, emit, queued_for
from ...exceptions import InvalidMessage, TaskExited, TaskkitError, class_path
from ...models import RunStatus, TaskRun
from ...registry import get_task
from ...runner import call
from ...upstream import pool_process_exiting
from .. import broadcast
from ..carrier import task_name
from ..locks import acquire, lock_key, release
from ..track import track_level
from .canvas import continuation, split_previous, stop_unless_done
from .delivery import Admission, admit, claim_token, hand_back, with_database
from .flight import Flight, take_off
from .recorder import recorder, upsert

logger = logging.getLogger("taskkit.worker")

#: How long a run whose job or single-instance lock is held waits before it tries again.
LOCK_RETRY_DELAY = timedelta(seconds=0.5)


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
    task: Task, ctx: TaskContext, row: dict[str, Any], exc: BaseException, trace: str | None = None
) -> float | None:
    """Record a failed attempt; return in how many seconds its retry is due (``None``: none)."""
    recorder.written(ctx.run_id)  # a pending RUNNING row must not land after this one
    history = TaskRun.objects.filter(pk=ctx.run_id).values_list("history", flat=True).first()
    now = timezone.now()
    fields = {
        **row,
        "traceback": trace or traceback.format_exc(),
        **failed_attempt(task, ctx.attempt, exc, list(history or []), now),
    }
    upsert(ctx.run_id, fields)
    due = fields["scheduled_for"] if fields["status"] == RunStatus.SCHEDULED else None
    retried = due is not None
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
    return (due - now).total_seconds() if due is not None else None


def celery_retry(delay: float, exc: BaseException) -> Retry:
    """Celery's outcome of an attempt whose retry taskkit scheduled, due in ``delay`` seconds:
    logged as a retry, ``task-retried``; Celery itself sends nothing (its copy of ``exc``
    is a picklable one)."""
    when: Any = round(delay, 3)  # seconds: the stubs want a numbers.Real
    cause: Any = exc  # SystemExit too: the stubs want an Exception
    return Retry(exc=cause, when=when)


def _release_queue_lock(task: Task, payload: dict[str, Any], message_id: str) -> None:
    """The run has left the queue: its payload may be queued again."""
    if Lock.QUEUE in task.meta.locks:
        release(lock_key(Lock.QUEUE, task, payload), message_id)


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


def _wait_for_lock(task: Task, ctx: TaskContext, row: dict[str, Any]) -> datetime:
    """Re-delay a run whose lock is held: it is tried again shortly, not run concurrently."""
    due = timezone.now() + LOCK_RETRY_DELAY * (1 + random.random())  # not for security
    upsert(
        ctx.run_id, {**row, "status": RunStatus.SCHEDULED, "scheduled_for": due, "sent_at": None}
    )
    logger.info("%s %s waits for its lock until %s", task.name, ctx.run_id, due)
    return due


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


def run_message(ctask: CeleryTask[Any, Any], *args: Any, **kwargs: Any) -> Any:
    """Run the taskkit task a Celery message names and return its result (the next step's
    ``event.previous`` in a chain); re-raise a final failure so Celery sees it.

    An attempt whose retry taskkit scheduled (or a run that waits for its lock)
    raises Celery's :class:`Retry`, so Celery reports a retry, not a success, and
    sends nothing: the delayed row is the retry. A message that cannot run (its
    task unknown here, its payload or its shape wrong) is recorded as a failed
    run, so an operator sees it, and raises. A step of a canvas that does not
    finish now stops Celery from going on (:mod:`.canvas`): a retry does too.
    """
    # Celery's Django fixup closes stale database connections around every task
    args, previous = split_previous(args, kwargs)
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
    # a step of a canvas sent again later (its retry, its lock's wait) goes on with it
    canvas = continuation(ctask, previous)
    again = row if canvas is None else {**row, "canvas": canvas}
    stored = bool(fields.get("stored")) or level is Track.ALL
    claim = claim_token(fields)
    give_back = functools.partial(hand_back, ctask, claim=claim.isoformat())
    redelivered = bool((getattr(ctask.request, "delivery_info", None) or {}).get("redelivered"))
    check = functools.partial(
        admit, task, ctx, fields, row, stored=stored, redelivered=redelivered, claim=claim
    )
    admission = with_database(check, give_back)
    if admission is Admission.SKIP:
        _release_queue_lock(task, plain, sent_id)
        stop_unless_done(ctask)
        return None
    held = _take_locks(task, ctx, plain, sent_id)
    if held is None:
        raise Retry(when=_wait_for_lock(task, ctx, again))
    flight: Flight | None = None
    try:  # a chained step (given the previous step's result) is no equal of another
        take = functools.partial(take_off, task, ctx, plain, again, shared=not previous)
        flight = with_database(take, give_back)
    finally:
        if flight is None or flight.followed:  # back to the broker, or it follows a leader
            for key in held:
                release(key, ctx.run_id)
    if flight.followed:
        return flight.follower_end(ctask)
    # track="all" rows, and a flight leader's (its followers read them), are written at
    # once; the recorder batches the others in a worker
    record = record or flight.leads
    started, finished = (
        (upsert, upsert)
        if level is Track.ALL or flight.leads
        else (recorder.started, recorder.finished)
    )
    claimed = admission is Admission.CLAIMED  # its claim wrote the running row
    row["started_at"] = claim if claimed else timezone.now()
    waited = queued_for(fields.get("enqueued_at"), row["started_at"])
    if waited is not None and not stored:  # the worker writes the row: queued at, not now
        row["created_at"] = row["started_at"] - timedelta(seconds=waited)
    if record and not claimed:
        with_database(lambda: started(ctx.run_id, {**row, "status": RunStatus.RUNNING}))
    emit(
        Step.STARTED,
        ctx.run_id,
        task.name,
        ctx.queue,
        ctx.attempt,
        worker=row["worker"],
        waited=waited,
    )
    try:
        given, chained = (previous[0] if previous else None), bool(previous)
        result = call(task, TaskEvent(task.name, plain, ctx, previous=given, chained=chained))
    except Exception as exc:
        delay = with_database(functools.partial(_record_failure, task, ctx, again, exc))
        if delay is None:
            raise
        raise celery_retry(delay, exc) from exc  # the retry goes on with the canvas
    except (SystemExit, KeyboardInterrupt) as exc:
        # exit(), sys.exit() or a KeyboardInterrupt raised by the task's own code fails this
        # run like any exception, recorded as itself. Raised on, it would end the prefork
        # child (Celery's WorkerLostError): Celery gets TaskExited instead. A stop from outside
        # still stops: Celery's WorkerShutdown/WorkerTerminate (raised by its signal handlers
        # in the main process, where a solo pool runs tasks) and the SystemExit billiard's
        # terminate-signal handler raises in a prefork child (hard time limit, cold shutdown).
        if isinstance(exc, WorkerShutdown | WorkerTerminate) or pool_process_exiting():
            raise
        delay = with_database(functools.partial(_record_failure, task, ctx, again, exc))
        if delay is None:
            raise TaskExited(f"{type(exc).__name__}: {exc}") from exc
        raise celery_retry(delay, exc) from exc
    else:
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
    finally:
        for key in held:
            release(key, ctx.run_id)
        flight.land()  # after the outcome is written: the followers read it
    emit(
        Step.SUCCEEDED,
        ctx.run_id,
        task.name,
        ctx.queue,
        ctx.attempt,
        duration=_seconds(row, done),
        worker=row["worker"],
    )
    return result


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
    TaskRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
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
    try:
        task = get_task(task_name(ctask.name, fields))
    except TaskkitError:
        return
    sent_id = message_id(fields, celery_id)
    ctx = _context(ctask, task, fields, sent_id)
    for key in run_lock_keys(task, payload):
        release(key, ctx.run_id)
    _record_failure(task, ctx, _row(ctask, task, ctx, sent_id, payload), exc, trace)
