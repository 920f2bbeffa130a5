"""Which workers are about: from their heartbeats, from the run table, or asked live.

:func:`worker_list` and :func:`workers` read taskkit's tables and never wait on
a worker; :func:`live_workers` asks them through Celery's remote control.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import current_app
from django.db.models import Max, Q
from django.utils import timezone

from ..conf import settings
from ..models import LOST_KEPT, TaskRun, WorkerHeartbeat
from ..times import iso


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
class WorkerInfo:
    """One worker as its last heartbeat described it."""

    #: The Celery node name, as runs record it.
    name: str
    host: str
    #: ``None``: an older worker's row, which does not tell.
    pid: int | None
    #: The queues it consumes, as when it started.
    queues: list[str]
    #: How many runs it works at once (0: not told).
    concurrency: int
    #: Its pool's kind (``prefork``, ``threads``…).
    pool: str
    #: Runs it was working at its last heartbeat.
    active: int
    #: Runs it had taken from the broker but not started (prefetched).
    reserved: int
    started_at: datetime
    #: Its last heartbeat.
    seen_at: datetime
    #: Whether it beat within ``WORKER_LOST_AFTER`` and was not found lost since.
    alive: bool
    #: When the leader's sweep found it lost; ``None`` for one not (yet) found lost.
    lost_at: datetime | None

    @classmethod
    def from_row(cls, row: WorkerHeartbeat, cutoff: datetime) -> WorkerInfo:
        return cls(
            name=row.name,
            host=row.host,
            pid=row.pid,
            queues=list(row.queues or []),
            concurrency=row.concurrency,
            pool=row.pool,
            active=row.active,
            reserved=row.reserved,
            started_at=row.started_at,
            seen_at=row.seen_at,
            alive=row.lost_at is None and row.seen_at >= cutoff,
            lost_at=row.lost_at,
        )

    def as_json(self) -> dict[str, Any]:
        moments = {
            "started_at": iso(self.started_at),
            "seen_at": iso(self.seen_at),
            "lost_at": iso(self.lost_at),
        }
        return {
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "queues": self.queues,
            "concurrency": self.concurrency,
            "pool": self.pool,
            "active": self.active,
            "reserved": self.reserved,
            "alive": self.alive,
            **moments,
        }


def worker_list() -> list[WorkerInfo]:
    """Every worker with a heartbeat: the live ones by name, then the others, last seen first.

    The others are those not seen for ``WORKER_LOST_AFTER`` (the leader's
    next sweep finds them lost) and those the sweep found lost within
    :data:`~taskkit.models.LOST_KEPT`. Read from the heartbeat table only:
    what a worker holds is as of its last heartbeat.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.WORKER_LOST_AFTER)
    rows = WorkerHeartbeat.objects.filter(Q(lost_at__isnull=True) | Q(lost_at__gte=now - LOST_KEPT))
    found = [WorkerInfo.from_row(row, cutoff) for row in rows]
    alive = sorted((w for w in found if w.alive), key=lambda w: w.name)
    gone = sorted((w for w in found if not w.alive), key=lambda w: w.seen_at, reverse=True)
    return alive + gone


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


def reserved_by_queue() -> dict[str, int]:
    """Runs live workers took from each queue but have not started, at their last heartbeat.

    A queue's length leaves them out: the broker handed them over (prefetch).
    """
    cutoff = timezone.now() - timedelta(seconds=settings.WORKER_LOST_AFTER)
    totals: dict[str, int] = {}
    for held in WorkerHeartbeat.objects.alive(cutoff).values_list("reserved_queues", flat=True):
        for queue, count in (held or {}).items():
            if isinstance(count, int):
                totals[queue] = totals.get(queue, 0) + count
    return totals


def _active(entry: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = entry.get("kwargs") or {}
    context: dict[str, Any] = kwargs["context"] if isinstance(kwargs.get("context"), dict) else {}
    started = entry.get("time_start")
    return {
        "run_id": str(context.get("run_id") or entry.get("id")),
        "name": entry.get("name"),
        "payload": kwargs.get("payload", kwargs) if context else kwargs,
        "started_at": iso(datetime.fromtimestamp(started, UTC)) if started else None,
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
