"""taskkit's own schedules in Beat: next run, switching them on and off, running one now."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from ...definition.schedules import describe_schedule
from ...exceptions import TaskkitError
from ...scheduling.periodic import PREFIX
from ...scheduling.recurrent import enqueue_recurrent
from .common import BROKER_ERRORS, broker_problem, done, manager, page, viewer


def _next_run(row: PeriodicTask, now: datetime) -> datetime | None:
    """When Beat will send ``row`` next (``None`` when disabled)."""
    if not row.enabled:
        return None
    remaining: timedelta = row.schedule.remaining_estimate(row.last_run_at or now)
    # Celery's estimate drops a fraction of a second: round to the whole second.
    return max(now, now + remaining + timedelta(milliseconds=500)).replace(microsecond=0)


def _entry(row: PeriodicTask, now: datetime) -> dict[str, Any]:
    """A schedule as the page shows it; one Beat cannot read is marked, not a 500."""
    cron = (
        " ".join(
            str(getattr(row.crontab, field))
            for field in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
        )
        if row.crontab
        else None
    )
    every = row.interval.schedule.run_every if row.interval else None
    try:
        following, problem = _next_run(row, now), ""
    except Exception as exc:  # a row Celery's crontab refuses: Beat cannot run it either
        following, problem = None, f"Beat cannot run this schedule: {exc}"
    return {
        "row": row,
        "schedule": describe_schedule(cron, every),
        "raw": cron or "",
        "next": following,
        "problem": problem,
    }


@viewer
def periodic(request: HttpRequest, site: AdminSite) -> HttpResponse:
    now = timezone.now()
    rows = PeriodicTask.objects.filter(name__startswith=PREFIX).order_by("name")
    schedules = [_entry(row, now) for row in rows.select_related("crontab", "interval")]
    return page(request, site, "periodic.html", "Periodic tasks", schedules=schedules)


@manager
def toggle(request: HttpRequest, site: AdminSite, pk: int) -> HttpResponse:
    row = PeriodicTask.objects.filter(pk=pk, name__startswith=PREFIX).first()
    if row is None:
        return done(request, "No such schedule.", "taskkit_periodic", error=True)
    row.enabled = not row.enabled
    row.save(update_fields=["enabled"])  # django-celery-beat tells Beat on save
    state = "enabled" if row.enabled else "disabled"
    return done(request, f"{row.name.removeprefix(PREFIX)} is {state}.", "taskkit_periodic")


@manager
def run_now(request: HttpRequest, site: AdminSite, name: str) -> HttpResponse:
    try:
        handle = enqueue_recurrent(name)
    except TaskkitError as exc:
        return done(request, str(exc), "taskkit_periodic", error=True)
    except BROKER_ERRORS as exc:
        return done(request, broker_problem(exc), "taskkit_periodic", error=True)
    return done(request, f"Queued {name} now as run {handle.id}.", "taskkit_run", handle.id)
