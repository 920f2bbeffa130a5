"""Queued work as the broker holds it: list, find and delete messages, purge queues.

What no Celery tool offers: the messages waiting in a queue, read without
consuming them, and single messages deleted (by run id, or by task name and
payload). Each broker shows what it can (:mod:`.brokers`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from celery import current_app
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from .. import events
from ..bridge.send.known_queues import known_queues
from ..bridge.send.unreachable import unreachable
from ..bridge.work.cancellations import cancel
from ..definition import canonical_json
from ..exceptions import BrokerUnavailable, TaskkitError, UnknownQueue
from ..models import RunStatus, TaskRun
from ..quarantine import QUARANTINE
from ..registry import get_task
from ..scheduling.periodic import PREFIX
from ..times import iso
from .brokers import Broker, Match, broker_for
from .messages import QueuedMessage
from .runs import run_uuid, tell_deleted
from .sieve import Sieve
from .workers import reserved_by_queue


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    length: int
    #: When the message a worker takes next was queued (``None``: empty, or not listable).
    oldest: datetime | None = None
    #: Runs live workers took from it but have not started (prefetched), not in ``length``.
    reserved: int = 0


@dataclass(frozen=True, slots=True)
class Details:
    """Every known queue with its length, and the counts of taskkit's tables."""

    broker: str
    queues: list[QueueInfo]
    delayed: int
    running: int
    failed: int
    #: taskkit's schedules in Beat that are switched on.
    periodic: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "queues": [
                {
                    "name": q.name,
                    "length": q.length,
                    "oldest": iso(q.oldest),
                    "reserved": q.reserved,
                }
                for q in self.queues
            ],
            "delayed": self.delayed,
            "running": self.running,
            "failed": self.failed,
            "periodic": self.periodic,
        }


@contextmanager
def broker_view(*, retry: bool = True) -> Iterator[Broker]:
    """The broker's view; :class:`~taskkit.BrokerUnavailable` when it cannot be reached.

    ``retry=False`` connects once: kombu would otherwise keep trying for
    seconds, longer than a health probe waits.
    """
    options = None if retry else {"max_retries": 0}
    try:
        with current_app.connection_for_read(transport_options=options) as connection:
            yield broker_for(connection)
    except Exception as exc:
        if isinstance(exc, TaskkitError) or not unreachable(exc):
            raise
        raise BrokerUnavailable(f"The broker is unreachable ({exc}).") from exc


def listable() -> bool:
    """Whether the broker can show and remove single messages (Redis, embedded: yes)."""
    with broker_view() as broker:
        return broker.listable


def _queues(broker: Broker) -> list[str]:
    """The queues taskkit knows, those the broker shows, and the quarantine if it holds items."""
    quarantined = {QUARANTINE} if broker.listable and broker.length(QUARANTINE) else set()
    return sorted(set(known_queues()) | broker.queues() | quarantined)


def _checked(broker: Broker, queue: str) -> str:
    known = _queues(broker)
    if queue not in known and queue != QUARANTINE:
        raise UnknownQueue(queue, known)
    return queue


def _counts() -> dict[str, int]:
    runs = TaskRun.objects
    return {
        RunStatus.SCHEDULED: runs.scheduled().count(),
        RunStatus.RUNNING: runs.running().count(),
        RunStatus.FAILED: runs.failed().count(),
    }


def _oldest(broker: Broker, queue: str) -> datetime | None:
    if not broker.listable:
        return None
    return next((m.enqueued_at for m in broker.scan(queue)), None)


def read_queues(broker: Broker) -> list[QueueInfo]:
    """Every known queue with its length and oldest message: a length and a one-message read each.

    The broker's half of :func:`details`, which the metrics read as well.
    """
    return [
        QueueInfo(queue, length, _oldest(broker, queue) if length else None)
        for queue in _queues(broker)
        for length in [broker.length(queue)]
    ]


def details() -> Details:
    """Every known queue with its length and oldest message, and the runs' counts.

    Fast: a length and a one-message read per queue, and four counts; no
    waiting on workers (that is :func:`live_workers`).
    """
    with broker_view() as broker:
        found = read_queues(broker)
        name = broker.name
    held = reserved_by_queue()
    queues = [replace(queue, reserved=held.get(queue.name, 0)) for queue in found]
    counts = _counts()
    return Details(
        broker=name,
        queues=queues,
        delayed=counts[RunStatus.SCHEDULED],
        running=counts[RunStatus.RUNNING],
        failed=counts[RunStatus.FAILED],
        periodic=PeriodicTask.objects.filter(name__startswith=PREFIX, enabled=True).count(),
    )


def info(queue: str) -> QueueInfo:
    """One queue's length and oldest message (``UnknownQueue`` if taskkit does not know it)."""
    with broker_view() as broker:
        _checked(broker, queue)
        length = broker.length(queue)
        oldest = _oldest(broker, queue) if length else None
    return QueueInfo(queue, length, oldest, reserved_by_queue().get(queue, 0))


def _matcher(name: str | None, payload: Mapping[str, Any] | None) -> Match:
    """Whether a message is of task ``name`` with ``payload`` (``None``: any)."""
    wanted = None if payload is None else dict(payload)
    spelled = None if payload is None else canonical_json(wanted)

    def match(message: QueuedMessage) -> bool:
        return (name is None or message.name == name) and (
            # == first: cheap, and rules out nearly everything; the JSON tells 1 from True
            wanted is None
            or (message.payload == wanted and canonical_json(message.payload) == spelled)
        )

    return match


def list_messages(
    queue: str, start: int = 0, stop: int = 49, name: str | None = None
) -> list[QueuedMessage]:
    """Messages ``start`` to ``stop`` (inclusive, 0 = the next one taken) of ``queue``.

    Nothing is consumed. With ``name``, only that task's messages count.
    """
    if start < 0 or stop < start:
        raise ValueError(f"need 0 <= start <= stop, not {start} and {stop}")
    with broker_view() as broker:
        _checked(broker, queue)
        found: list[QueuedMessage] = []
        skipped = 0
        sieve = Sieve.for_(name=name)
        for message in broker.scan(queue, start if name is None else 0, sieve):
            if name is not None and message.name != name:
                continue
            if name is not None and skipped < start:
                skipped += 1
                continue
            found.append(message)
            if len(found) > stop - start:
                break
        return found


def find(name: str | None = None, payload: Mapping[str, Any] | None = None) -> dict[str, list[Any]]:
    """Runs of ``name`` (with ``payload``) that are queued, held, delayed or running.

    Queued messages come from every queue the broker can list, held ones from
    the messages workers took but have not acknowledged (Redis); delayed and
    running runs from taskkit's table.
    """
    queued: list[QueuedMessage] = []
    held: list[QueuedMessage] = []
    match, sieve = _matcher(name, payload), Sieve.for_(name=name, payload=payload)
    with broker_view() as broker:
        if broker.listable:
            for queue in _queues(broker):
                queued += filter(match, broker.scan(queue, sieve=sieve))
            held += filter(match, broker.held(sieve))
    rows = TaskRun.objects.delayed_or_running()
    if name is not None:
        rows = rows.named(name)
    stored = [
        row for row in rows.order_by("created_at") if payload is None or row.payload == payload
    ]
    return {
        "queued": queued,
        "held": held,
        "delayed": [row for row in stored if row.status == RunStatus.SCHEDULED],
        "running": [row for row in stored if row.status == RunStatus.RUNNING],
    }


def delete(
    queue: str,
    name: str,
    payload: Mapping[str, Any] | None = None,
    count: int = 0,
    *,
    dry_run: bool = False,
) -> int:
    """Remove messages of task ``name`` (with ``payload``) from ``queue``; return how many.

    ``count=0`` removes every match, ``count=N`` the first N a worker would take.
    With ``dry_run``, nothing is removed: the number that would be is returned.

    A broker that cannot remove one message (RabbitMQ) gets a cancellation
    instead: workers skip the matching messages queued before now (at most
    ``count``). Nothing leaves the queue, so 0 is returned.
    """
    get_task(name)  # an unknown name is an error, not "0 removed"
    if count < 0:
        raise ValueError(f"count must be 0 (all) or more, not {count}")
    match, sieve = _matcher(name, payload), Sieve.for_(name=name, payload=payload)
    with broker_view() as broker:
        _checked(broker, queue)
        if not broker.listable:
            if not dry_run:
                cancel(queue=queue, name=name, payload=payload, count=count)
            return 0
        if dry_run:
            found = filter(match, broker.scan(queue, sieve=sieve))
            return sum(1 for _ in itertools.islice(found, count or None))
        return broker.delete(queue, match, sieve, count)


def delete_run(run_id: str | uuid.UUID, *, dry_run: bool = False) -> bool:
    """Remove the run ``run_id``: its delayed row, or its queued message. ``True`` if found.

    A queued message is looked for in every queue the broker can list (the
    run's own queue first, when it has a row), and its row, if any, is then
    cancelled. A message a worker holds unacknowledged (Redis), or one on a
    broker that cannot remove single messages (RabbitMQ), is cancelled
    instead: workers skip it, and Celery's revoke reaches those that hold it
    already. A run that has started runs to its end. An item in the quarantine
    is removed by the id ``taskqueue list`` shows for it.
    """
    wanted = str(run_uuid(run_id))
    delayed = TaskRun.objects.scheduled().filter(pk=wanted)
    row = delayed.first()
    if row is not None:
        if dry_run:
            return True
        deleted = bool(delayed.delete()[0])
        if deleted:
            tell_deleted(row)
        return deleted
    sieve = Sieve.for_(run_id=wanted)
    found: list[QueuedMessage] = []

    def is_run(message: QueuedMessage) -> bool:
        if message.run_id != wanted:
            return False
        found.append(message)
        return True

    with broker_view() as broker:
        if broker.listable:
            stored = TaskRun.objects.filter(pk=wanted).values_list("queue", flat=True).first()
            for queue in sorted(_queues(broker), key=lambda queue: queue != stored):
                if dry_run and any(map(is_run, broker.scan(queue, sieve=sieve))):
                    return True
                if not dry_run and broker.delete(queue, is_run, sieve, limit=1):
                    _cancel_row(wanted)
                    removed = found[-1]
                    events.emit_on_commit(
                        events.Step.CANCELLED,
                        wanted,
                        removed.name,
                        removed.queue,
                        removed.attempt,
                        error="Deleted while queued.",
                    )
                    return True
            if _quarantined(broker, is_run, dry_run):
                return True
            if not any(map(is_run, broker.held(sieve))):
                return False
        if not dry_run:
            current_app.control.revoke(wanted)
            cancel(run_id=wanted)
            _cancel_row(wanted)
        return True


def _quarantined(broker: Broker, is_run: Match, dry_run: bool) -> bool:
    """Find (and remove) a quarantined item: its id is made of its bytes, so no sieve finds it."""
    if dry_run:
        return any(map(is_run, broker.scan(QUARANTINE)))
    return bool(broker.delete(QUARANTINE, is_run, limit=1))


def _cancel_row(run_id: str) -> None:
    TaskRun.objects.queued().filter(pk=run_id).update(
        status=RunStatus.CANCELLED, finished_at=timezone.now()
    )


def purge(queue: str, *, dry_run: bool = False) -> int:
    """Remove every message of ``queue``; return how many there were (or are, with ``dry_run``)."""
    with broker_view() as broker:
        _checked(broker, queue)
        return broker.length(queue) if dry_run else broker.purge(queue)
