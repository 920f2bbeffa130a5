"""The dashboard's charts' numbers: runs finished per minute or hour, failures, queue wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskkit.models import RunStatus, TaskRun
from taskkit.queues.history import history

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 1, 12, 30, 40, tzinfo=UTC)


def finished(
    at: datetime, status: str = RunStatus.SUCCEEDED, wait: float = 1.0, **fields: Any
) -> None:
    queued = at - timedelta(seconds=wait + 0.5)
    TaskRun.objects.create(
        name=fields.pop("name", "echo:payload"),
        status=status,
        created_at=queued,
        started_at=queued + timedelta(seconds=wait),
        finished_at=at,
        **fields,
    )


def test_the_last_hour_minute_by_minute() -> None:
    finished(NOW - timedelta(seconds=5), wait=2.0)  # 12:30
    finished(NOW - timedelta(seconds=10), wait=4.0)  # 12:30
    finished(NOW - timedelta(minutes=1), RunStatus.FAILED, wait=0.5)  # 12:29
    finished(NOW - timedelta(minutes=59))  # 11:31, the first minute shown
    finished(NOW - timedelta(minutes=61))  # too old
    TaskRun.objects.create(name="echo:payload", status=RunStatus.RUNNING, started_at=NOW)
    buckets = history("hour", now=NOW)
    assert len(buckets) == 60
    assert buckets[0].start == datetime(2026, 3, 1, 11, 31, tzinfo=UTC)
    assert buckets[-1].start == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    last, before = buckets[-1], buckets[-2]
    assert (last.succeeded, last.failed) == (2, 0) and last.wait == pytest.approx(3.0)
    assert (before.succeeded, before.failed) == (0, 1) and before.wait == pytest.approx(0.5)
    assert buckets[0].finished == 1
    assert sum(bucket.finished for bucket in buckets) == 4
    assert buckets[10].wait is None and buckets[10].finished == 0


def test_the_last_day_hour_by_hour_by_task_and_by_queue() -> None:
    finished(NOW - timedelta(hours=3), name="db:migrate", queue="slow")
    finished(NOW - timedelta(hours=3), queue="default")
    finished(NOW - timedelta(hours=25))
    buckets = history("day", now=NOW)
    assert len(buckets) == 24 and buckets[-1].start == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert [b.finished for b in buckets if b.finished] == [2]
    assert sum(b.finished for b in history("day", task="db:migrate", now=NOW)) == 1
    assert sum(b.finished for b in history("day", queue="default", now=NOW)) == 1
    assert sum(b.finished for b in history("day", task="nothing", now=NOW)) == 0


def test_buckets_follow_the_projects_zone(settings: Any) -> None:
    settings.TIME_ZONE = "Asia/Kolkata"  # +05:30: hours start at :30 UTC
    finished(NOW - timedelta(minutes=5))  # 12:25 UTC = 17:55 IST
    buckets = history("day", now=NOW)  # 18:00 IST is the last hour
    assert buckets[-1].start.utcoffset() == timedelta(hours=5, minutes=30)
    assert (buckets[-1].start.hour, buckets[-1].finished) == (18, 0)
    assert (buckets[-2].start.hour, buckets[-2].finished) == (17, 1)


def test_an_unknown_window_is_an_error() -> None:
    with pytest.raises(ValueError, match="window is one of hour, day"):
        history("week")
