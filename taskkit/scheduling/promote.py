"""Promotion: due delayed runs and unsent outbox rows become broker messages.

Rows are claimed with one conditional ``UPDATE … WHERE status = 'scheduled'``
(for the outbox: ``WHERE sent_at IS NULL``) tagged with a fresh token, then read
back by that token: two schedulers running at once never send the same row
twice, on SQLite and PostgreSQL alike (where the rows are picked ``FOR UPDATE
SKIP LOCKED``, so a second scheduler takes other rows instead of waiting).
``sent_at`` marks a row as handed to the publisher; a row the broker did not
take is given back for the next tick. Claimed rows of one task and queue are
published together (on Redis, :mod:`~taskkit.bridge.send.redis_batch`'s fast path).

The claim commits only after the publish, in the same transaction: a
scheduler killed between the two (``SIGKILL``, a lost host) leaves its rows
as they were, for the next leader to send. Were the claim committed first,
its rows would stay ``queued`` and never be sent. What remains is a kill
between the broker taking the messages and the ``COMMIT``: those runs are
sent again (at least once, never lost).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.db.models import Min, QuerySet
from django.utils import timezone

from .. import events
from ..bridge.send.messages import Prepared
from ..bridge.send.publish import announce, publish, stored_run
from ..conf import settings
from ..exceptions import BrokerUnavailable, TaskkitError
from ..models import RunStatus, TaskRun

logger = logging.getLogger("taskkit.scheduler")


def _claim(candidates: QuerySet[TaskRun], limit: int, **claim: Any) -> list[TaskRun]:
    """Mark up to ``limit`` of ``candidates`` (still matching ``claim``) as sent by us."""
    token = uuid.uuid4().hex
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        TaskRun.objects.filter(pk__in=ids, **claim).update(
            status=RunStatus.QUEUED, claimed_by=token, sent_at=timezone.now()
        )
    return list(TaskRun.objects.filter(pk__in=ids, claimed_by=token).order_by("created_at"))


def _prepared(rows: list[TaskRun]) -> list[Prepared]:
    """The claimed rows as runs to publish; a row that cannot be sent any more is failed."""
    runs = []
    for row in rows:
        try:
            runs.append(stored_run(row))
        except (TaskkitError, ValueError, TypeError) as exc:  # its payload no longer fits,
            _fail(row, exc)  # its queue has a name no broker may have, its task is gone
    return runs


def _fail(run: TaskRun | Prepared, exc: Exception) -> None:
    """Fail a claimed run that cannot be sent, so it holds up no other (the operator sees it
    among the failed runs, and can retry it once its cause is gone)."""
    pk, name = (run.pk, run.name) if isinstance(run, TaskRun) else (run.run_id, run.task.name)
    error = f"Could not be sent: {type(exc).__name__}: {exc}"
    logger.error("run %s of %s: %s", pk, name, error)
    TaskRun.objects.filter(pk=pk).update(
        status=RunStatus.FAILED, error=error, finished_at=timezone.now()
    )
    events.emit_on_commit(events.Step.FAILED, str(pk), name, run.queue, run.attempt, error=error)


def _send(rows: list[TaskRun], give_back: dict[str, Any], step: events.Step) -> int:
    """Publish claimed rows, one batch per task and queue; if the broker is away, give back.

    Each run the broker took is told as ``step`` once the claim commits.
    """
    batches: dict[tuple[str, str], list[Prepared]] = {}
    for run in _prepared(rows):
        batches.setdefault((run.task.name, run.queue), []).append(run)
    groups = list(batches.values())
    sent = 0
    for index, batch in enumerate(groups):
        try:
            taken = _publish(batch)
        except BrokerUnavailable:
            unsent = [run.run_id for later in groups[index:] for run in later]
            logger.warning("Broker unreachable; %s runs wait for the next tick", len(unsent))
            TaskRun.objects.filter(pk__in=unsent).update(sent_at=None, **give_back)
            break
        if taken and events.wanted(step):
            transaction.on_commit(partial(announce, step, taken))
        sent += len(taken)
    return sent


def _publish(batch: list[Prepared]) -> list[Prepared]:
    """Publish ``batch``; return the runs the broker took.

    A batch that fails for another reason than an unreachable broker is sent
    again run by run, and a run that fails alone is failed with the reason: one
    bad row (a canvas no message can carry, a queue the broker refuses) holds up
    no other. A run the failed batch had sent already goes twice; its claim in
    the worker runs it once.
    """
    try:
        publish(batch)
        return batch
    except BrokerUnavailable:
        raise
    except Exception as exc:
        if len(batch) == 1:
            _fail(batch[0], exc)
            return []
    taken = []
    for run in batch:
        try:
            publish([run])
        except BrokerUnavailable:
            raise
        except Exception as exc:
            _fail(run, exc)
        else:
            taken.append(run)
    return taken


def promote_due(now: datetime | None = None, limit: int = 500) -> int:
    """Send up to ``limit`` delayed runs that are due; return how many were sent."""
    due = TaskRun.objects.scheduled().filter(scheduled_for__lte=now or timezone.now())
    due = due.order_by("scheduled_for")
    with transaction.atomic():  # the claim commits with the publish, or not at all
        rows = _claim(due, limit, status=RunStatus.SCHEDULED)
        give_back = {"status": RunStatus.SCHEDULED}
        return _send(rows, give_back, events.Step.PROMOTED) if rows else 0


def resend_outbox(now: datetime | None = None, limit: int = 500) -> int:
    """Send queued rows that were committed but never reached the broker (``track="all"``).

    Their enqueue never reached the broker, so they are told as enqueued now.
    """
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.OUTBOX_AFTER)
    unsent = TaskRun.objects.queued().filter(sent_at__isnull=True, created_at__lte=cutoff)
    unsent = unsent.order_by("created_at")
    with transaction.atomic():  # the claim commits with the publish, or not at all
        rows = _claim(unsent, limit, status=RunStatus.QUEUED, sent_at__isnull=True)
        return _send(rows, {}, events.Step.ENQUEUED) if rows else 0


def next_due() -> datetime | None:
    """When the earliest delayed run is due, or ``None`` if there is none."""
    due: datetime | None = TaskRun.objects.scheduled().aggregate(first=Min("scheduled_for"))[
        "first"
    ]
    return due
