"""Promotion: due delayed runs and unsent outbox rows become broker messages.

Rows are claimed with one conditional ``UPDATE … WHERE status = 'scheduled'``
tagged with this process's token, then read back by that token: two schedulers
running at once never send the same row twice, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.db.models import Min
from django.utils import timezone

from ..bridge.publish import publish_run
from ..exceptions import BrokerUnavailable, TaskkitError
from ..models import RunStatus, TaskRun

logger = logging.getLogger("taskkit.scheduler")

#: How long a queued ``track="all"`` row may stay unsent before the scheduler sends it.
OUTBOX_GRACE = timedelta(seconds=10)


def _claim(ids: list[uuid.UUID], token: str) -> list[TaskRun]:
    TaskRun.objects.filter(pk__in=ids, status=RunStatus.SCHEDULED).update(
        status=RunStatus.QUEUED, claimed_by=token, sent_at=None
    )
    return list(TaskRun.objects.filter(pk__in=ids, claimed_by=token, status=RunStatus.QUEUED))


def _send(rows: list[TaskRun], revert: bool) -> int:
    sent = 0
    for row in rows:
        try:
            publish_run(row)
        except BrokerUnavailable:
            logger.warning("Broker unreachable; run %s stays for the next tick", row.pk)
            if revert:
                TaskRun.objects.filter(pk=row.pk).update(status=RunStatus.SCHEDULED)
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
    return _send(_claim(ids, uuid.uuid4().hex), revert=True)


def resend_outbox(now: datetime | None = None, limit: int = 500) -> int:
    """Send queued rows that were committed but never reached the broker (``track="all"``)."""
    cutoff = (now or timezone.now()) - OUTBOX_GRACE
    rows = list(
        TaskRun.objects.filter(
            status=RunStatus.QUEUED, sent_at__isnull=True, created_at__lte=cutoff
        ).order_by("created_at")[:limit]
    )
    return _send(rows, revert=False)


def next_due() -> datetime | None:
    """When the earliest delayed run is due, or ``None`` if there is none."""
    due: datetime | None = TaskRun.objects.filter(status=RunStatus.SCHEDULED).aggregate(
        first=Min("scheduled_for")
    )["first"]
    return due
