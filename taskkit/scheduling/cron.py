"""When a cron schedule fires: wall-clock times in the project's zone, across DST changes.

Celery's ``crontab`` computes its next run with local-time arithmetic that a DST
change can trip up. taskkit's scheduler decides instead, minute by minute, with
two rules:

- a time in the **skipped** hour (clocks go forward) runs once, at the first
  valid instant after it (the end of the gap, 03:00 for a 02:30 task in Paris);
- a time in the **repeated** hour (clocks go back) runs once, at its first
  occurrence.

A tick is the UTC instant of the minute it fires in; its run id derives from
that instant, so one tick is never sent twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any  # a Celery crontab: its parsed fields are not in the stubs

MINUTE = timedelta(minutes=1)


def floor_minute(moment: datetime) -> datetime:
    """The UTC instant of the minute ``moment`` falls in."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def matches(schedule: Any, wall: datetime) -> bool:
    """Whether wall-clock minute ``wall`` is one of the schedule's (Celery's fields, 0 = Sunday)."""
    return (
        wall.minute in schedule.minute
        and wall.hour in schedule.hour
        and wall.day in schedule.day_of_month
        and wall.month in schedule.month_of_year
        and wall.isoweekday() % 7 in schedule.day_of_week
    )


def _skipped_match(schedule: Any, before: datetime, wall: datetime) -> bool:
    """Whether a wall minute the clock jumped over, between ``before`` and ``wall``, matches."""
    skipped = before.replace(tzinfo=None) + MINUTE
    end = wall.replace(tzinfo=None)
    while skipped < end:
        if matches(schedule, skipped):
            return True
        skipped += MINUTE
    return False


def fire_times(schedule: Any, zone: tzinfo, after: datetime, until: datetime) -> list[datetime]:
    """The instants in ``(after, until]`` at which ``schedule`` fires in ``zone``, in UTC."""
    fired = []
    moment = floor_minute(after) + MINUTE
    previous = (moment - MINUTE).astimezone(zone)
    while moment <= until:
        wall = moment.astimezone(zone)
        if wall.fold == 0 and (  # fold 1: the second pass of a repeated hour
            matches(schedule, wall)
            or (
                wall.replace(tzinfo=None) - previous.replace(tzinfo=None) > MINUTE
                and _skipped_match(schedule, previous, wall)
            )
        ):
            fired.append(moment)
        previous = wall
        moment += MINUTE
    return fired
