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
from datetime import datetime, timedelta
from typing import Any

from celery import Task as CeleryTask
from celery.exceptions import Retry, SoftTimeLimitExceeded, WorkerShutdown, WorkerTerminate
from django.utils import timezone

from ...conf import settings
from ...definition import Lock, Task, TaskContext, TaskEvent, Track, received_payload
from ...events import Step, queued_for
from ...exceptions import TaskExited, TaskkitError, WorkerLost
from ...models import RunStatus
from ...registry import get_task
from ...runner import call
from ...upstream import pool_process_exiting
from ..carrier import task_name
from ..locks import acquire, lock_key, release
from ..track import track_level
from .canvas import continuation, split_previous
from .delivery import (
    MAX_STARTS,
    Admission,
    admit,
    claim_token,
    drop_connections,
    hand_back,
    not_run,
    with_database,
)
from .flight import Flight, take_off
from .message import (
    MESSAGE_ARGUMENTS,
    check_shape,
    message_id,
    row_id,
    run_context,
    run_row,
    tell,
)
from .outcome import record_failure, run_lock_keys, seconds, unrunnable
from .recorder import recorder, upsert

logger = logging.getLogger("taskkit.worker")

#: How long a run whose job or single-instance lock is held waits before it tries again.
LOCK_RETRY_DELAY = timedelta(seconds=0.5)


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


def _lost_too_often(
    task: Task, ctx: TaskContext, payload: dict[str, Any], row: dict[str, Any], sent_id: str
) -> BaseException:
    """Fail an idempotent attempt whose worker was lost in each of its starts (or schedule
    its retry, as its policy says); return what the delivery raises. Its locks are released
    here: the processes that held them are gone."""
    _release_queue_lock(task, payload, sent_id)
    for key in run_lock_keys(task, payload):
        release(key, ctx.run_id)
    lost = WorkerLost(
        f"its worker was lost during each of its {MAX_STARTS} starts on record (a process killed: "
        "out of memory, a crash in native code); not started again"
    )
    delay = with_database(functools.partial(record_failure, task, ctx, row, lost, ""))
    return lost if delay is None else celery_retry(delay, lost)


def run_message(ctask: CeleryTask[Any, Any], *args: Any, **kwargs: Any) -> Any:
    """Run the taskkit task a Celery message names and return its result (the next step's
    ``event.previous`` in a chain); re-raise a final failure so Celery sees it.

    An attempt whose retry taskkit scheduled (or a run that waits for its lock)
    raises Celery's :class:`Retry`, so Celery reports a retry, not a success, and
    sends nothing: the delayed row is the retry. A message that cannot run (its
    task unknown here, its payload or its shape wrong) is recorded as a failed
    run, so an operator sees it, and raises. A delivery that does not run (skipped,
    cancelled, a single-flight follower) raises what :func:`.delivery.not_run` gives:
    Celery stores no success for it, and a canvas does not go on (:mod:`.canvas`).
    """
    # Celery's Django fixup closes database connections around every task, unless
    # CELERY_DB_REUSE_MAX is set; a soft time limit closes its thread's (drop_connections)
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
        ctx = run_context(ctask, task, fields, sent_id)
    except TaskkitError as exc:
        failed = functools.partial(unrunnable, ctask, row_id(sent_id), name, payload, exc)
        with_database(failed)
        raise
    # rows are written per the track level, and always where one exists already
    level = track_level(task)
    record = level is not Track.FAILURES or bool(fields.get("stored"))
    row = run_row(ctask, task, ctx, sent_id, plain)
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
    if admission is Admission.SKIP or admission is Admission.CANCELLED:
        _release_queue_lock(task, plain, sent_id)
        raise not_run(ctask, revoked=admission is Admission.CANCELLED)
    if admission is Admission.LOST:
        raise _lost_too_often(task, ctx, plain, again, sent_id)
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
    # track="all" rows, a flight leader's (its followers read them) and an idempotent
    # run's delivered again (it may start again after a lost worker, and the next loss
    # must find its row to be counted: MAX_STARTS) are written at once; the recorder
    # batches the others in a worker
    at_once = flight.leads or (redelivered and task.meta.idempotent)
    record = record or at_once
    started, finished = (
        (upsert, upsert) if level is Track.ALL or at_once else (recorder.started, recorder.finished)
    )
    claimed = admission is Admission.CLAIMED  # its claim wrote the running row
    row["started_at"] = claim if claimed else timezone.now()
    waited = queued_for(fields.get("enqueued_at"), row["started_at"])
    if waited is not None and not stored:  # the worker writes the row: queued at, not now
        row["created_at"] = row["started_at"] - timedelta(seconds=waited)
    if record and not claimed:
        with_database(lambda: started(ctx.run_id, {**row, "status": RunStatus.RUNNING}))
    tell(Step.STARTED, task, ctx, row["worker"], waited=waited)
    try:
        given, chained = (previous[0] if previous else None), bool(previous)
        result = call(task, TaskEvent(task.name, plain, ctx, previous=given, chained=chained))
    except Exception as exc:
        if isinstance(exc, SoftTimeLimitExceeded):  # it may have stopped a query half-way
            drop_connections(ctask)
        delay = with_database(functools.partial(record_failure, task, ctx, again, exc))
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
        delay = with_database(functools.partial(record_failure, task, ctx, again, exc))
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
    tell(Step.SUCCEEDED, task, ctx, row["worker"], duration=seconds(row, done))
    return result
