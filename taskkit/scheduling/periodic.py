"""Periodic tasks from code, kept in django-celery-beat's tables.

taskkit owns the ``PeriodicTask`` rows whose name starts with ``taskkit: ``: one
per task with a ``frequency`` or ``cron`` in its meta, and one per task and cron
of the ``SCHEDULE`` setting. A sync creates and updates them, disables the rows
of tasks that left the code (and re-enables them when they come back), never
touches an operator's ``enabled`` switch otherwise, and changes nothing when
nothing changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django_celery_beat.models import (
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)

from ..conf import settings
from ..definition.cron import normalize_cron
from ..registry import all_tasks

M = TypeVar("M", CrontabSchedule, IntervalSchedule)

PREFIX = "taskkit: "
DESCRIPTION = "Managed by taskkit from the code; edits other than 'enabled' are overwritten."
REMOVED = "[task removed from the code] "


@dataclass(frozen=True, slots=True)
class Periodic:
    """One schedule taskkit wants in Beat."""

    key: str
    task: str
    cron: str | None = None
    every: timedelta | None = None


@dataclass(frozen=True, slots=True)
class SyncResult:
    created: int = 0
    updated: int = 0
    disabled: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.disabled)


def schedule_setting() -> dict[str, list[str]]:
    """``SCHEDULE`` as ``{cron: [task names]}``; a single name may stand for a list.

    Entries of the wrong type are left out here; check E006 reports them.
    """
    parsed: dict[str, list[str]] = {}
    for cron, names in settings.SCHEDULE.items():
        listed = [names] if isinstance(names, str) else names
        if isinstance(cron, str) and isinstance(listed, list | tuple):
            parsed[cron] = [name for name in listed if isinstance(name, str)]
    return parsed


def wanted() -> list[Periodic]:
    """Every schedule the code and settings ask for, each once."""
    return list({periodic.key: periodic for periodic in _wanted()}.values())


def _wanted() -> Iterator[Periodic]:
    for task in all_tasks().values():
        if task.meta.cron is not None:
            yield Periodic(f"{PREFIX}{task.name}", task.name, cron=task.meta.cron)
        elif task.meta.frequency is not None:
            yield Periodic(f"{PREFIX}{task.name}", task.name, every=task.meta.frequency)
    for cron, names in schedule_setting().items():
        try:
            expression = normalize_cron(cron)
        except ValueError:
            continue  # check E006 reports it
        for name in names:
            yield Periodic(f"{PREFIX}{name} @ {expression}", name, cron=expression)


def _first_or_create(model: type[M], **fields: object) -> M:
    """A row with these fields: ``first()``, not ``get()``, since the admin allows twins."""
    return model.objects.filter(**fields).order_by("pk").first() or model.objects.create(**fields)


def _schedule(periodic: Periodic) -> dict[str, object]:
    """The ``crontab``/``interval`` foreign keys of a schedule (rows made on demand)."""
    if periodic.cron is not None:
        minute, hour, day_of_month, month, day_of_week = periodic.cron.split()
        crontab = _first_or_create(
            CrontabSchedule,
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month,
            day_of_week=day_of_week,
            timezone=django_settings.TIME_ZONE,
        )
        return {"crontab": crontab, "interval": None}
    assert periodic.every is not None
    seconds = max(1, round(periodic.every.total_seconds()))
    interval = _first_or_create(IntervalSchedule, every=seconds, period=IntervalSchedule.SECONDS)
    return {"crontab": None, "interval": interval}


def _differences(row: PeriodicTask, fields: Mapping[str, object]) -> dict[str, object]:
    return {name: value for name, value in fields.items() if getattr(row, name) != value}


#: How many times a sync that collided with another one is tried.
SYNC_ATTEMPTS = 3


def sync_periodic(periodics: Sequence[Periodic] | None = None) -> SyncResult:
    """Make Beat's taskkit-owned rows match the code; see the module docstring.

    Two Beats starting together sync at the same moment; on PostgreSQL both may
    try to create a row, and one fails: with an ``IntegrityError`` from the
    database, or with a ``ValidationError`` when django-celery-beat's ``save()``
    (which checks uniqueness itself) already sees the other's committed row. It
    then syncs again, and finds the row.
    """
    periodics = list(wanted()) if periodics is None else periodics
    for attempt in range(1, SYNC_ATTEMPTS + 1):
        try:
            return _sync(periodics)
        except (IntegrityError, ValidationError):
            if attempt == SYNC_ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # the loop returns or raises


def _sync(periodics: Sequence[Periodic]) -> SyncResult:
    created = updated = disabled = 0
    with transaction.atomic():
        rows = {row.name: row for row in PeriodicTask.objects.filter(name__startswith=PREFIX)}
        for periodic in periodics:
            fields = {"task": periodic.task, "kwargs": json.dumps({}), **_schedule(periodic)}
            row = rows.pop(periodic.key, None)
            if row is None:
                PeriodicTask.objects.create(
                    name=periodic.key, description=DESCRIPTION, enabled=True, **fields
                )
                created += 1
                continue
            changes = _differences(row, {**fields, "description": DESCRIPTION})
            if row.description.startswith(REMOVED):  # it came back: undo what the sync did
                changes["enabled"] = True
            if changes:
                PeriodicTask.objects.filter(pk=row.pk).update(**changes)
                updated += 1
        for row in rows.values():  # the task left the code; a row already disabled stays as is
            if row.enabled:
                PeriodicTask.objects.filter(pk=row.pk).update(
                    enabled=False, description=REMOVED + DESCRIPTION
                )
                disabled += 1
        result = SyncResult(created, updated, disabled)
        if result.changed:
            PeriodicTasks.update_changed()
    return result
