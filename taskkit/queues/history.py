"""What finished lately, bucket by bucket: the numbers behind the dashboard's charts.

Counted by the database from the run table: one grouped query over the runs that
finished in the window, with the database's own time functions. Runs are
bucketed by when they finished; a bucket's wait is the mean time its runs spent
queued (from queued, or due, to started), to the millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, FloatField, Func, Q
from django.db.models.functions import Coalesce, Floor
from django.utils import timezone

from ..models import RunStatus, TaskRun


class Epoch(Func):
    """Seconds since 1970 of a datetime column, computed by the database's own functions.

    Django's ``Trunc`` and datetime arithmetic call Python once per row on SQLite;
    over the runs of a day that is most of a page's time.
    """

    output_field = FloatField()
    template = "EXTRACT(EPOCH FROM %(expressions)s)"

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = "((julianday(%(expressions)s) - 2440587.5) * 86400.0)"
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_mysql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = "UNIX_TIMESTAMP(%(expressions)s)"
        return self.as_sql(compiler, connection, template=template, **extra)


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
        runs = runs.named(task)
    if queue:
        runs = runs.on_queue(queue)
    # buckets start on the zone's own hours: +05:30 moves them half an hour
    size = step.total_seconds()
    shift = (last.utcoffset() or timedelta()).total_seconds() % size
    counted = (
        runs.annotate(bucket=Floor((Epoch("finished_at") + shift) / size))
        .values("bucket")
        .annotate(
            succeeded=Count("pk", filter=Q(status=RunStatus.SUCCEEDED)),
            failed=Count("pk", filter=Q(status=RunStatus.FAILED)),
            wait=Avg(
                Epoch("started_at") - Epoch(Coalesce("scheduled_for", "created_at")),
                filter=Q(started_at__isnull=False),
            ),
        )
    )
    found = {datetime.fromtimestamp(int(row["bucket"]) * size - shift, UTC): row for row in counted}
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


def _seconds(value: float | None) -> float | None:
    """To the millisecond: SQLite's ``julianday`` is exact to about 10 µs."""
    return None if value is None else max(round(float(value), 3), 0.0)
