"""What finished lately, bucket by bucket: the numbers behind the dashboard's charts.

Counted by the database from the run table (one grouped query over the runs that
finished in the window), so a chart costs one indexed-range read however many
rows the table holds. Runs are bucketed by when they finished; a bucket's wait
is the mean time its runs spent queued (from queued, or due, to started).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q
from django.db.models.functions import Coalesce, Trunc
from django.utils import timezone

from ..models import RunStatus, TaskRun

#: The windows a chart can show: how far back, and the bucket's unit.
WINDOWS: dict[str, tuple[timedelta, str]] = {
    "hour": (timedelta(hours=1), "minute"),
    "day": (timedelta(days=1), "hour"),
}
_STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}


@dataclass(frozen=True)
class Bucket:
    """The runs that finished in ``[start, start + step)``."""

    start: datetime
    succeeded: int = 0
    failed: int = 0
    #: Mean seconds from queued (or due) to started; ``None`` when nothing finished.
    wait: float | None = None

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed


def history(
    window: str = "hour",
    *,
    task: str | None = None,
    queue: str | None = None,
    now: datetime | None = None,
) -> list[Bucket]:
    """One :class:`Bucket` per minute of the last hour (``"hour"``) or hour of the last day
    (``"day"``), oldest first, of ``task``'s runs or ``queue``'s, or all."""
    if window not in WINDOWS:
        raise ValueError(f"window is one of {', '.join(WINDOWS)}, not {window!r}")
    span, unit = WINDOWS[window]
    step = _STEP[unit]
    zone = timezone.get_current_timezone()
    last = _floor(timezone.localtime(now or timezone.now(), zone), unit)
    first = last - span + step
    runs = TaskRun.objects.filter(
        finished_at__gte=first, status__in=(RunStatus.SUCCEEDED, RunStatus.FAILED)
    )
    if task:
        runs = runs.filter(name=task)
    if queue:
        runs = runs.filter(queue=queue)
    waited = ExpressionWrapper(
        F("started_at") - Coalesce("scheduled_for", "created_at"), output_field=DurationField()
    )
    counted = (
        runs.annotate(bucket=Trunc("finished_at", unit, tzinfo=zone))
        .values("bucket")
        .annotate(
            succeeded=Count("pk", filter=Q(status=RunStatus.SUCCEEDED)),
            failed=Count("pk", filter=Q(status=RunStatus.FAILED)),
            wait=Avg(waited, filter=Q(started_at__isnull=False)),
        )
    )
    found = {timezone.localtime(row["bucket"], zone): row for row in counted}
    buckets = []
    moment = first
    while moment <= last:
        row = found.get(moment)
        buckets.append(
            Bucket(moment, row["succeeded"], row["failed"], _seconds(row["wait"]))
            if row
            else Bucket(moment)
        )
        moment += step
    return buckets


def _floor(moment: datetime, unit: str) -> datetime:
    moment = moment.replace(second=0, microsecond=0)
    return moment.replace(minute=0) if unit == "hour" else moment


def _seconds(value: Any) -> float | None:
    """A mean duration as the database gives it: a timedelta, or microseconds (SQLite)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return max(value.total_seconds(), 0.0)
    return max(float(value) / 1_000_000, 0.0)
