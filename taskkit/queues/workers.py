"""Which workers are about: seen in the run table, or asked live through Celery's remote control.

Apart from :func:`taskkit.queues.details`, which never waits on a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import current_app
from django.db.models import Max
from django.utils import timezone

from ..models import TaskRun


def workers(since: timedelta = timedelta(hours=1)) -> dict[str, datetime]:
    """The workers that started a recorded run within ``since``, with when they last did."""
    seen = (
        TaskRun.objects.filter(started_at__gte=timezone.now() - since)
        .exclude(worker="")
        .values_list("worker")
        .annotate(last=Max("started_at"))
    )
    return dict(sorted(seen))


@dataclass(frozen=True, slots=True)
class LiveWorker:
    """What one worker said it is doing."""

    name: str
    #: The runs it is running: ``run_id``, ``name``, ``payload``, ``started_at``.
    active: list[dict[str, Any]]
    #: How many messages it took ahead and holds unstarted (prefetched).
    reserved: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "active": self.active, "reserved": self.reserved}


def _active(entry: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = entry.get("kwargs") or {}
    context: dict[str, Any] = kwargs["context"] if isinstance(kwargs.get("context"), dict) else {}
    started = entry.get("time_start")
    return {
        "run_id": str(context.get("run_id") or entry.get("id")),
        "name": entry.get("name"),
        "payload": kwargs.get("payload", kwargs) if context else kwargs,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat() if started else None,
    }


def live_workers(timeout: float = 1.0) -> list[LiveWorker]:
    """Ask the running workers what they do; wait at most ``timeout`` seconds in all.

    Celery's remote control (``celery inspect``): workers that do not answer in
    time, or run without remote control, are missing from the answer.
    """
    inspector = current_app.control.inspect(timeout=timeout / 2)
    active = inspector.active() or {}
    reserved = inspector.reserved() or {}
    return [
        LiveWorker(
            name,
            [_active(entry) for entry in active.get(name) or []],
            len(reserved.get(name) or []),
        )
        for name in sorted(set(active) | set(reserved))
    ]
