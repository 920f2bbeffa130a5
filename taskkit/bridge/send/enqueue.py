"""The enqueue family: normal, delayed and bulk, by task value or by name, sync and async.

Every payload is checked before anything is stored or sent. Messages leave after
the surrounding transaction commits (a rollback sends nothing). Delayed runs are
rows in taskkit's table that the scheduler promotes when due, never Celery ETA
messages, so they can be listed and deleted and are not re-delivered or lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.utils import timezone

from ... import events
from ...definition import Lock, Source, Task, Track
from ...exceptions import BrokerUnavailable
from ...models import RunStatus, TaskRun
from ...registry import get_task
from ..locks import acquire, lock_key, release
from ..track import track_level
from .capture import active as active_capture
from .celery_message import resolve_queue
from .handle import RunHandle
from .known_queues import remember
from .messages import Prepared, prepare, prepare_many
from .publish import announce, publish

Payload = Mapping[str, Any] | None

#: The longest delay ``enqueue_in`` accepts.
MAX_DELAY = timedelta(days=3650)

#: Namespace of the run ids of periodic ticks (uuid5 of schedule and tick time).
TICK_NAMESPACE = uuid.UUID("5b0e7f3e-61a4-4f0c-9a57-6c2c1b3f1a10")


def _handle(run: Prepared) -> RunHandle:
    return RunHandle(id=run.run_id, name=run.task.name, queue=run.queue)


def _row(run: Prepared, status: RunStatus, **fields: Any) -> TaskRun:
    return TaskRun(
        id=run.run_id,
        name=run.task.name,
        queue=run.queue,
        payload=run.payload,
        status=status,
        attempt=run.attempt,
        source=str(run.source),
        priority=run.priority,
        **fields,
    )


def _send_after_commit(runs: list[Prepared], outbox: bool, named: str | None) -> None:
    """Publish ``runs`` once the transaction commits; ``named``: a queue to remember once sent."""

    def send() -> None:
        try:
            publish(runs)
        except BrokerUnavailable:
            for run in runs:  # nothing is queued, so nothing may hold the queue lock
                if Lock.QUEUE in run.task.meta.locks and not outbox:
                    release(lock_key(Lock.QUEUE, run.task, run.payload), run.run_id)
            raise
        announce(events.Step.ENQUEUED, runs)
        if named is not None and runs:  # a queue only the broker took is known
            remember(named)
        if outbox:
            TaskRun.objects.filter(pk__in=[r.run_id for r in runs]).update(sent_at=timezone.now())

    transaction.on_commit(send)


def _queue_locked(runs: list[Prepared]) -> tuple[list[Prepared], list[RunHandle]]:
    """Take each run's ``queue_lock``; a run whose twin is already queued is dropped."""
    fresh, handles = [], []
    for run in runs:
        key = lock_key(Lock.QUEUE, run.task, run.payload)
        holder = acquire(key, run.run_id, run.task.meta.lock_timeout)
        if holder is None:
            fresh.append(run)
            handles.append(_handle(run))
        else:
            handles.append(
                RunHandle(
                    id=holder or run.run_id, name=run.task.name, queue=run.queue, deduplicated=True
                )
            )
    return fresh, handles


def enqueue_many_tasks(
    task: Task,
    payloads: Iterable[Payload],
    queue: str | None = None,
    *,
    scheduled_time: datetime | None = None,
    priority: int | None = None,
) -> list[RunHandle]:
    """Queue one run per payload over a single producer; all payloads are checked first.

    ``priority`` is a Celery message priority, in the broker's own order.
    """
    target = resolve_queue(task, queue)
    runs = prepare_many(task, payloads, target, scheduled_time=scheduled_time, priority=priority)
    if (capture := active_capture()) is not None:
        return capture.record(runs)
    handles = [_handle(run) for run in runs]
    if Lock.QUEUE in task.meta.locks:
        runs, handles = _queue_locked(runs)
    outbox = track_level(task) is Track.ALL
    named = target if queue is not None else None
    if outbox:  # stored with its rows: the scheduler sends them if this process does not
        TaskRun.objects.bulk_create([_row(run, RunStatus.QUEUED) for run in runs])
        if named is not None:
            remember(named)
            named = None
    _send_after_commit(runs, outbox, named)
    return handles


def enqueue_task(
    task: Task,
    payload: Payload = None,
    queue: str | None = None,
    *,
    scheduled_time: datetime | None = None,
    priority: int | None = None,
) -> RunHandle:
    """Queue one run of ``task`` now (with ``track="all"``, its row joins this transaction)."""
    return enqueue_many_tasks(
        task, [payload], queue, scheduled_time=scheduled_time, priority=priority
    )[0]


def enqueue_task_at(
    task: Task,
    when: datetime,
    payload: Payload = None,
    queue: str | None = None,
    *,
    priority: int | None = None,
) -> RunHandle:
    """Store a run due at ``when`` (an aware datetime); the scheduler sends it then."""
    if not isinstance(when, datetime):
        raise TypeError(f"enqueue_at takes a datetime, not {type(when).__name__}")
    if timezone.is_naive(when):
        raise ValueError("enqueue_at needs an aware datetime (use django.utils.timezone)")
    try:
        when.astimezone(UTC)  # as the database stores it
    except OverflowError:
        raise ValueError(
            f"enqueue_at needs a time within years 1 to 9999 in UTC, not {when}"
        ) from None
    run = prepare(task, payload, resolve_queue(task, queue), scheduled_time=when, priority=priority)
    if (capture := active_capture()) is not None:
        return capture.record([run], run_after=when)[0]
    if queue is not None:
        remember(run.queue)
    _row(run, RunStatus.SCHEDULED, scheduled_for=when).save(force_insert=True)
    events.emit_on_commit(events.Step.ENQUEUED, run.run_id, task.name, run.queue, run.attempt)
    return _handle(run)


def enqueue_tick(task: Task, schedule: str, tick: datetime) -> RunHandle | None:
    """Queue the run of periodic ``schedule`` for its ``tick``, once, whoever asks.

    The run id derives from schedule and tick, and the row is inserted before it is
    sent: a second scheduler sending the same tick finds the row and sends nothing
    (``None``). The payload and the context carry the tick's time as ``scheduledTime``.
    With a ``queue_lock``, a tick whose previous run is still queued is not sent
    either: its row is cancelled, saying why.
    """
    run = prepare(
        task,
        {"scheduledTime": tick.isoformat()},
        resolve_queue(task, None),
        run_id=str(uuid.uuid5(TICK_NAMESPACE, f"{schedule}@{tick.isoformat()}")),
        scheduled_time=tick,
        source=Source.BEAT,
        stored=True,
    )
    try:
        with transaction.atomic():
            _row(run, RunStatus.QUEUED, scheduled_for=tick).save(force_insert=True)
    except IntegrityError:
        return None
    if Lock.QUEUE in task.meta.locks:
        holder = acquire(
            lock_key(Lock.QUEUE, task, run.payload), run.run_id, task.meta.lock_timeout
        )
        if holder is not None:
            error = f"Skipped: run {holder} of this task is still queued (queue_lock)."
            TaskRun.objects.filter(pk=run.run_id).update(
                status=RunStatus.CANCELLED, finished_at=timezone.now(), error=error
            )
            events.emit_on_commit(
                events.Step.CANCELLED, run.run_id, task.name, run.queue, run.attempt, error=error
            )
            return None
    _send_after_commit([run], outbox=True, named=None)
    return _handle(run)


def delay_to_datetime(delay: float | timedelta) -> datetime:
    """``now + delay`` for ``enqueue_in``: seconds or a timedelta, never negative."""
    if isinstance(delay, bool) or not isinstance(delay, int | float | timedelta):
        raise TypeError(f"enqueue_in takes seconds or a timedelta, not {type(delay).__name__}")
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if not 0 <= seconds < MAX_DELAY.total_seconds():  # also refuses NaN and infinity
        raise ValueError(f"enqueue_in needs a delay from 0 to {MAX_DELAY.days} days, not {delay!r}")
    return timezone.now() + timedelta(seconds=seconds)


def enqueue(name: str, payload: Payload = None, *, queue: str | None = None) -> RunHandle:
    """Queue one run of the task called ``name`` and return its handle."""
    return enqueue_task(get_task(name), payload, queue)


def enqueue_many(
    name: str, payloads: Iterable[Payload], *, queue: str | None = None
) -> list[RunHandle]:
    """Queue one run of ``name`` per payload, in one batch."""
    return enqueue_many_tasks(get_task(name), payloads, queue)


def enqueue_at(
    name: str, when: datetime, payload: Payload = None, *, queue: str | None = None
) -> RunHandle:
    """Run the task called ``name`` at ``when`` (an aware datetime)."""
    return enqueue_task_at(get_task(name), when, payload, queue)


def enqueue_in(
    name: str, delay: float | timedelta, payload: Payload = None, *, queue: str | None = None
) -> RunHandle:
    """Run the task called ``name`` after ``delay`` (seconds or a timedelta)."""
    return enqueue_task_at(get_task(name), delay_to_datetime(delay), payload, queue)


async def aenqueue(name: str, payload: Payload = None, *, queue: str | None = None) -> RunHandle:
    """Async twin of :func:`enqueue`."""
    return await sync_to_async(enqueue)(name, payload, queue=queue)


async def aenqueue_many(
    name: str, payloads: Iterable[Payload], *, queue: str | None = None
) -> list[RunHandle]:
    """Async twin of :func:`enqueue_many`."""
    return await sync_to_async(enqueue_many)(name, list(payloads), queue=queue)


async def aenqueue_at(
    name: str, when: datetime, payload: Payload = None, *, queue: str | None = None
) -> RunHandle:
    """Async twin of :func:`enqueue_at`."""
    return await sync_to_async(enqueue_at)(name, when, payload, queue=queue)


async def aenqueue_in(
    name: str, delay: float | timedelta, payload: Payload = None, *, queue: str | None = None
) -> RunHandle:
    """Async twin of :func:`enqueue_in`."""
    return await sync_to_async(enqueue_in)(name, delay, payload, queue=queue)
