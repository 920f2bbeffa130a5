"""Promotion: due delayed runs and unsent outbox rows become broker messages.

Rows are claimed with one conditional ``UPDATE … WHERE status = 'scheduled'``
(for the outbox: ``WHERE sent_at IS NULL``) tagged with a fresh token, then read
back by that token: two schedulers running at once never send the same row
twice, on SQLite and PostgreSQL alike. ``sent_at`` marks a row as handed to the
publisher; a row the broker did not take is given back for the next tick.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Min
from django.utils import timezone

from ..bridge.publish import publish_run
from ..conf import settings
from ..exceptions import BrokerUnavailable, TaskkitError
from ..models import RunStatus, TaskRun

logger = logging.getLogger("taskkit.scheduler")


def _claim(ids: list[uuid.UUID], status: RunStatus, **claim: Any) -> list[TaskRun]:
    """Mark the rows of ``ids`` still in ``status`` as being sent by us, and return those."""
    token = uuid.uuid4().hex
    TaskRun.objects.filter(pk__in=ids, status=status, **claim).update(
        status=RunStatus.QUEUED, claimed_by=token, sent_at=timezone.now()
    )
    return list(TaskRun.objects.filter(pk__in=ids, claimed_by=token).order_by("created_at"))


def _send(rows: list[TaskRun], give_back: dict[str, Any]) -> int:
    """Publish claimed rows; if the broker is away, give this and the rest back unsent."""
    sent = 0
    for index, row in enumerate(rows):
        try:
            publish_run(row)
        except BrokerUnavailable:
            logger.warning("Broker unreachable; %s runs wait for the next tick", len(rows) - index)
            unsent = [r.pk for r in rows[index:]]
            TaskRun.objects.filter(pk__in=unsent).update(sent_at=None, **give_back)
            break
        except TaskkitError as exc:  # the task left the code, or its payload no longer fits
            TaskRun.objects.filter(pk=row.pk).update(
                status=RunStatus.FAILED,
                error=f"{type(exc).__name__}: {exc}",
                finished_at=timezone.now(),
            )
            continue
        sent += 1
    return sent


def promote_due(now: datetime | None = None, limit: int = 500) -> int:
    """Send up to ``limit`` delayed runs that are due; return how many were sent."""
    now = now or timezone.now()
    ids = list(
        TaskRun.objects.filter(status=RunStatus.SCHEDULED, scheduled_for__lte=now)
        .order_by("scheduled_for")
        .values_list("pk", flat=True)[:limit]
    )
    if not ids:
        return 0
    return _send(_claim(ids, RunStatus.SCHEDULED), {"status": RunStatus.SCHEDULED})


def resend_outbox(now: datetime | None = None, limit: int = 500) -> int:
    """Send queued rows that were committed but never reached the broker (``track="all"``)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.OUTBOX_AFTER)
    ids = list(
        TaskRun.objects.filter(
            status=RunStatus.QUEUED, sent_at__isnull=True, created_at__lte=cutoff
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    if not ids:
        return 0
    return _send(_claim(ids, RunStatus.QUEUED, sent_at__isnull=True), {})


def next_due() -> datetime | None:
    """When the earliest delayed run is due, or ``None`` if there is none."""
    due: datetime | None = TaskRun.objects.filter(status=RunStatus.SCHEDULED).aggregate(
        first=Min("scheduled_for")
    )["first"]
    return due
