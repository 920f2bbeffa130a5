"""One cron parser: what ``check`` accepts is what Beat runs; 7 is Sunday; schedules read as text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery.schedules import crontab
from django.core.checks import run_checks
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from taskkit import task
from taskkit.definition.cron import normalize_cron
from taskkit.definition.schedules import describe_cron, describe_every, describe_schedule
from taskkit.scheduling.cron import fire_times
from taskkit.scheduling.periodic import PREFIX, sync_periodic
from tests.users import staff


def schedule_of(expression: str) -> crontab:
    minute, hour, day_of_month, month, day_of_week = expression.split()
    return crontab(minute, hour, day_of_week, day_of_month, month)


def test_seven_is_sunday_stored_as_zero_and_fires_on_sundays() -> None:
    meta = task(name="weekly:job", cron="0 3 * * 7")(lambda event: None).meta
    assert meta.cron == "0 3 * * 0"
    week = datetime(2026, 12, 6, tzinfo=UTC) - timedelta(days=7)  # Sun 29 Nov 2026 00:00
    fired = fire_times(schedule_of(meta.cron), UTC, week, week + timedelta(days=14))
    assert [moment.strftime("%a %d %H:%M") for moment in fired] == ["Sun 29 03:00", "Sun 06 03:00"]


@pytest.mark.parametrize(
    ("expression", "stored"),
    [
        ("0 3 * * 5-7", "0 3 * * 0,5,6"),
        ("0 3 * * 1-7/2", "0 3 * * 0,1,3,5"),  # Mon, Wed, Fri, Sun
        ("0 3 * * 7,1", "0 3 * * 0,1"),
        ("0 3 * * sun", "0 3 * * sun"),
        ("0 17 * * 6", "0 17 * * 6"),  # a 7 elsewhere is left alone
        ("7 7 7 7 *", "7 7 7 7 *"),
    ],
)
def test_day_of_week_seven_keeps_its_days(expression: str, stored: str) -> None:
    assert normalize_cron(expression) == stored


@pytest.mark.parametrize(
    "expression", ["0 3 * * 8", "61 * * * *", "0 24 * * *", "0 0 0 * *", "0 0 31 2 *", "* * * 13 *"]
)
def test_what_celerys_crontab_refuses_is_refused(expression: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(f"{expression!r}: ")):
        normalize_cron(expression)


def test_check_e006_refuses_what_beat_would_drop(reload_registry: Any) -> None:
    reload_registry("tests.apps.nested", TASKKIT={"SCHEDULE": {"0 3 * * 8": "db:migrate"}})
    (error,) = [m for m in run_checks(tags=["taskkit"]) if m.id == "taskkit.E006"]
    assert "day of week '8': Invalid end range: 8 > 6" in error.msg


@pytest.mark.django_db
def test_check_accepts_sunday_seven_and_beat_stores_zero(reload_registry: Any) -> None:
    reload_registry("tests.apps.nested", TASKKIT={"SCHEDULE": {"0 3 * * 7": "db:migrate"}})
    assert not [m for m in run_checks(tags=["taskkit"]) if m.id == "taskkit.E006"]
    sync_periodic()
    row = PeriodicTask.objects.get(name__startswith=PREFIX, task="db:migrate")
    assert row.crontab is not None and row.crontab.day_of_week == "0"
    assert row.schedule.day_of_week == {0}  # Beat's own crontab reads it


def test_schedules_read_as_text() -> None:
    assert describe_cron("0 3 * * 0") == "At 03:00, only on Sunday"
    assert describe_cron("*/5 * * * *") == "Every 5 minutes"
    assert describe_cron("not cron") == "not cron"
    assert [describe_every(s) for s in (1, 30, 60, 90, 3600, 86_400, 93_600)] == [
        "Every second",
        "Every 30 seconds",
        "Every minute",
        "Every 1 minute 30 seconds",
        "Every hour",
        "Every day",
        "Every 1 day 2 hours",
    ]
    assert describe_schedule(None, timedelta(minutes=5)) == "Every 5 minutes"
    assert describe_schedule(None, None) == ""


@pytest.mark.django_db
def test_the_periodic_page_describes_schedules_and_survives_one_beat_cannot_read(
    reload_registry: Any,
) -> None:
    reload_registry("tests.apps.nested", TASKKIT={"SCHEDULE": {"0 3 * * 7": "db:migrate"}})
    sync_periodic()
    broken = CrontabSchedule.objects.create(minute="0", hour="3", day_of_week="9")
    PeriodicTask.objects.create(name=f"{PREFIX}broken", task="echo:payload", crontab=broken)
    page = staff("viewer", "view_dashboard").get(reverse("admin:taskkit_periodic"))
    assert page.status_code == 200
    body = page.content.decode()
    assert "At 03:00, only on Sunday <code>0 3 * * 0</code>" in body
    assert "Beat cannot run this schedule" in body
