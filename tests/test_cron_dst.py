"""Cron schedules in a zone with DST: the skipped hour runs once after the gap, the repeated once.

Europe/Paris in 2026: clocks go forward on 29 March at 02:00 (to 03:00) and back
on 25 October at 03:00 (to 02:00).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import current_app
from celery.schedules import crontab
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from taskkit.models import TaskRun
from taskkit.scheduler import Scheduler
from taskkit.scheduling.cron import fire_times

PARIS = ZoneInfo("Europe/Paris")


def local(day: tuple[int, int], hour: int, minute: int = 0, fold: int = 0) -> datetime:
    return datetime(2026, *day, hour, minute, tzinfo=PARIS, fold=fold)


def day_of(expression: str, day: tuple[int, int]) -> list[str]:
    """The fire times over a whole Paris day, as local wall times with their UTC offset."""
    minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    schedule = crontab(minute, hour, day_of_week, day_of_month, month_of_year)  # Celery's order
    start = datetime(2026, *day, tzinfo=PARIS)
    ticks = fire_times(
        schedule, PARIS, start - timedelta(seconds=1), start + timedelta(days=1, seconds=-1)
    )
    return [tick.astimezone(PARIS).strftime("%H:%M%z") for tick in ticks]


SPRING, AUTUMN, PLAIN = (3, 29), (10, 25), (3, 28)


def test_a_time_in_the_skipped_hour_runs_once_at_the_end_of_the_gap() -> None:
    assert day_of("30 2 * * *", PLAIN) == ["02:30+0100"]
    assert day_of("30 2 * * *", SPRING) == ["03:00+0200"]
    # several skipped times, and 03:00's own: one run
    assert day_of("*/15 2-3 * * *", SPRING) == [
        "03:00+0200",
        "03:15+0200",
        "03:30+0200",
        "03:45+0200",
    ]
    assert len(day_of("0 * * * *", SPRING)) == 23


def test_a_time_in_the_repeated_hour_runs_once() -> None:
    assert day_of("30 2 * * *", AUTUMN) == ["02:30+0200"]
    assert day_of("*/30 1-3 * * *", AUTUMN) == [
        "01:00+0200", "01:30+0200", "02:00+0200", "02:30+0200", "03:00+0100", "03:30+0100"
    ]  # fmt: skip
    assert len(day_of("0 * * * *", AUTUMN)) == 24
    assert len(day_of("* * * * *", AUTUMN)) == 24 * 60  # the wall minutes, each once


def test_times_away_from_the_changes_are_plain_wall_clock_times() -> None:
    assert day_of("0 9 * * 1-5", (3, 30)) == ["09:00+0200"]  # a Monday
    assert day_of("0 9 * * 1-5", (3, 29)) == []  # a Sunday
    assert day_of("15 23 29 * *", SPRING) == ["23:15+0200"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (local(SPRING, 1, 58), local(SPRING, 3, 3), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        (
            local(AUTUMN, 2, 20),
            local(AUTUMN, 2, 40, fold=1),
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        ),
    ],
    ids=["skipped-hour", "repeated-hour"],
)
def test_the_scheduler_follows_the_rules_with_a_real_beat_entry(
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    reload_registry: Any,
    start: datetime,
    end: datetime,
    expected: datetime,
) -> None:
    """Beat's own loop (is_due, apply_async) on a fake clock, a second at a time, over the gap."""
    settings.TIME_ZONE = "Europe/Paris"
    reload_registry("tests.apps.nested")
    schedule = CrontabSchedule.objects.create(minute="30", hour="2", timezone="Europe/Paris")
    PeriodicTask.objects.create(name="taskkit: db:migrate@dst", task="db:migrate", crontab=schedule)
    monkeypatch.setattr(sys.modules["taskkit.bridge.send.enqueue"], "publish", lambda runs: None)
    clock = [start.astimezone(UTC)]  # UTC: arithmetic on Paris wall times would skip the change
    monkeypatch.setattr("django.utils.timezone.now", lambda: clock[0])
    beat = Scheduler(app=current_app, lazy=True)
    entry = beat.schedule["taskkit: db:migrate@dst"]
    while clock[0] < end.astimezone(UTC):
        if beat.is_due(entry).is_due:
            beat.apply_async(entry, advance=False)
        clock[0] += timedelta(seconds=20)
    [run] = TaskRun.objects.all()
    assert run.scheduled_for == expected
    assert run.payload == {"scheduledTime": expected.isoformat()}
