"""Worker heartbeats, and the sweep that settles the runs of a worker that died outright.

A pool process that dies is reported by the worker's main process
(``WorkerLostError``, see :mod:`~taskkit.bridge.work.register`). When the main
process itself dies (``SIGKILL``, the out-of-memory killer, a lost host),
nobody is left to say so, and its runs would stay ``running`` for ever. So:

- each worker's main process writes a :class:`~taskkit.models.WorkerHeartbeat`
  row (its node name, when it started, when it was last seen, which process
  it is, what it consumes and how many runs it holds: :mod:`.about`) every
  quarter of :ref:`WORKER_LOST_AFTER <setting-WORKER_LOST_AFTER>`,
  from a thread of its own; a second live process under the same node name is
  refused the row (and logs an error), so it never keeps a dead one's row
  fresh (``taskworker`` gives each process a name of its own);
- the leader Beat runs :func:`sweep` as often: a worker not seen for
  ``WORKER_LOST_AFTER`` seconds is lost, and so is the previous life of a
  worker that started again under the same name. Their ``running`` runs are
  failed with ``WorkerLost`` (or their retry scheduled, as the task's retry
  policy says), their run locks released; a lost worker's row is then marked
  ``lost_at``, listed among the workers lost lately, and deleted
  :data:`~taskkit.models.LOST_KEPT` later. A worker back under its name takes
  its row again.

The runs of an ``idempotent`` task are left alone: their message goes back to
the queue (at once on RabbitMQ, after ``visibility_timeout`` on Redis) and the
run runs again. A worker without a heartbeat row (stopped cleanly long ago, or
of an older taskkit) is never swept. Only runs that have a ``running`` row are
seen: with ``track="runs"``, a run killed in its first 0.2 s has none (see
:mod:`~taskkit.bridge.work.recorder`). ``seen_at`` is written by the worker's clock
and compared with the Beat's: keep the clocks in sync, well within
``WORKER_LOST_AFTER``. A worker only cut off from the database for that long
is taken as lost too; the runs it still finishes write their end over the
sweep's failure.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, close_old_connections, connections
from django.db.models import Q
from django.utils import timezone

from ...conf import settings
from ...events import Step, emit
from ...exceptions import TaskkitError, WorkerLost
from ...models import LOST_KEPT, TaskRun, WorkerHeartbeat
from ..locks import release
from .about import About, describe, held, waiting

logger = logging.getLogger("taskkit.worker")
REFUSALS_BEFORE_ERROR = 3
"""Heartbeats refused in a row before a name clash is logged: a restart under the
same pid waits two for its previous life's row."""


def interval() -> float:
    """Seconds between two heartbeats, and between two sweeps."""
    return max(settings.WORKER_LOST_AFTER / 4, 0.1)


def beat(
    name: str,
    started_at: datetime,
    process: str,
    about: About | None = None,
    load: tuple[int, int] = (0, 0),
    by_queue: dict[str, int] | None = None,
) -> bool:
    """Say that worker ``name``, started at ``started_at``, is alive now; ``False`` if refused.

    ``about`` is what the worker is, ``load`` how many runs it works and holds
    unstarted, ``by_queue`` the unstarted ones per queue. The row is this
    ``process``'s, or free: new, already this process's, not refreshed for
    ``WORKER_LOST_AFTER`` or found lost (its writer is gone), or written by a
    process of this host that no longer exists (a restart under a fixed
    ``-n``). A row written under this very host and pid by another life (a
    container's pid 1 started again) is free once it missed two heartbeats:
    a live twin (two containers sharing a host name) would have kept it
    fresh. A second live process under the same node name is refused, so it
    can never keep the first one's row fresh after the first died.
    """
    now = timezone.now()
    active, reserved = load
    fields = {
        "started_at": started_at,
        "seen_at": now,
        "process": process,
        "active": active,
        "reserved": reserved,
        "reserved_queues": by_queue or {},
        "lost_at": None,
        **(about.fields() if about else {}),
    }
    stale = now - timedelta(seconds=settings.WORKER_LOST_AFTER)
    rows = WorkerHeartbeat.objects.filter(name=name)
    takeable = Q(process=process) | Q(process="") | Q(seen_at__lt=stale) | Q(lost_at__isnull=False)
    if rows.filter(takeable).update(**fields):
        return True
    taken = rows.values_list("process", "seen_at").first()
    if taken is not None:
        holder, seen_at = taken
        if _same_pid(holder):  # a previous life with this pid (pid 1 in a container)
            free = seen_at < now - timedelta(seconds=2 * interval())
        else:
            free = not _alive_here(holder)
        return free and bool(rows.filter(process=holder).update(**fields))
    try:
        WorkerHeartbeat.objects.create(name=name, **fields)
    except IntegrityError:  # another process took the name meanwhile
        return False
    return True


def process_identity() -> str:
    """This process, as a heartbeat row names its writer: host, pid and a random token."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _same_pid(process: str) -> bool:
    """Whether ``process`` names this host and this process's pid (another token: another life)."""
    host, _, rest = process.partition(":")
    return host == socket.gethostname() and rest.partition(":")[0] == str(os.getpid())


def _alive_here(process: str) -> bool:
    """Whether ``process`` may still run: on another host (no telling), or a live pid here."""
    host, _, rest = process.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class Heart:
    """The thread of a worker's main process that writes its heartbeat."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: What the worker is, as the next heartbeat writes it (a ``*`` worker's queues grow).
        self.about: About | None = None

    def start(self, name: str, about: About | None = None) -> None:
        if self._thread is not None:
            return
        started_at = timezone.now()
        process = process_identity()
        self._stop = threading.Event()
        self.about = about
        self._thread = threading.Thread(
            target=self._loop,
            args=(name, started_at, process),
            name="taskkit-heartbeat",
            daemon=True,
        )
        self._thread.start()

    def _loop(self, name: str, started_at: datetime, process: str) -> None:
        refused = 0
        try:
            while True:
                try:
                    accepted = beat(name, started_at, process, self.about, held(), waiting())
                    refused = 0 if accepted else refused + 1
                    if refused == REFUSALS_BEFORE_ERROR:  # a previous life's row is free by then
                        logger.error(
                            "another live worker process uses the node name %s: give each "
                            "worker its own (-n); its heartbeat is not written meanwhile",
                            name,
                        )
                except Exception:  # the database may be away for a moment
                    logger.exception("could not write the heartbeat of %s", name)
                    close_old_connections()
                if self._stop.wait(interval()):
                    _stopped(name, process)
                    return
        finally:
            connections.close_all()  # this thread's connections

    def stop(self) -> None:
        """Stop beating (a warm shutdown): the row goes, unless runs of it are left ``running``
        (a cold shutdown killed them), which the sweep then settles once it is lost."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None


heart = Heart()


def _stopped(name: str, process: str) -> None:
    """A worker stopped cleanly leaves no row: it is not listed among the workers lost."""
    try:
        if not TaskRun.objects.running().filter(worker=name).exists():
            WorkerHeartbeat.objects.filter(name=name, process=process).delete()
    except Exception:  # the database away: the row goes stale and is swept
        logger.exception("could not remove the heartbeat of %s", name)


def _start(sender: Any = None, **kwargs: Any) -> None:
    name = getattr(sender, "hostname", None)
    if not name:
        return
    try:
        found: About | None = describe(sender)
    except Exception:  # what the worker is matters less than its heartbeat
        logger.exception("could not tell what worker %s is; its heartbeat goes without", name)
        found = None
    heart.start(str(name), found)


def _stop(**kwargs: Any) -> None:
    heart.stop()


def connect() -> None:
    """Beat in every worker started in this process (its main process: ``worker_ready``)."""
    from celery import signals

    signals.worker_ready.connect(_start, weak=False, dispatch_uid="taskkit.heartbeat")
    signals.worker_shutdown.connect(_stop, weak=False, dispatch_uid="taskkit.heartbeat_stop")


def _lose(row: TaskRun, why: str, now: datetime) -> bool:
    """Fail ``row`` (or schedule its retry) if it is still ``running`` on its worker."""
    from ...registry import get_task  # imported late, as the worker side does
    from .outcome import failed_attempt, run_lock_keys

    try:
        task = get_task(row.name)
    except TaskkitError:
        task = None
    if task is not None and task.meta.idempotent:
        return False  # its message comes back to the queue and runs again
    error = WorkerLost(f"worker {row.worker} {why}; the run's outcome is unknown")
    fields = {"traceback": "", **failed_attempt(task, row.attempt, error, row.history or [], now)}
    changed = TaskRun.objects.running().filter(pk=row.pk, worker=row.worker).update(**fields)
    if changed and task is not None:
        for key in run_lock_keys(task, row.payload if isinstance(row.payload, dict) else {}):
            release(key, str(row.pk))
    if changed:
        ran = (now - row.started_at).total_seconds() if row.started_at else None
        emit(
            Step.LOST,
            str(row.pk),
            row.name,
            row.queue,
            row.attempt,
            duration=ran,
            worker=row.worker,
            error=fields["error"],
        )
    return bool(changed)


def sweep(now: datetime | None = None) -> int:
    """Settle the ``running`` runs of lost workers; return how many were failed or retried.

    A lost worker's row is marked, not deleted, so the workers lost lately can
    be listed; the rows marked :data:`~taskkit.models.LOST_KEPT` ago go.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.WORKER_LOST_AFTER)
    settled = 0
    for heartbeat in WorkerHeartbeat.objects.unswept():
        runs = TaskRun.objects.running().filter(worker=heartbeat.name)
        lost = heartbeat.seen_at < cutoff
        if lost:
            why = f"not seen since {heartbeat.seen_at.isoformat()}"
        else:  # alive, but started again: what its last life ran is lost
            runs = runs.filter(started_at__lt=heartbeat.started_at)
            why = f"restarted at {heartbeat.started_at.isoformat()}"
        settled += sum(_lose(row, why, now) for row in runs)
        if lost:  # unless it came back meanwhile
            WorkerHeartbeat.objects.unswept().filter(
                name=heartbeat.name, seen_at=heartbeat.seen_at
            ).update(lost_at=now)
    WorkerHeartbeat.objects.lost().filter(lost_at__lt=now - LOST_KEPT).delete()
    return settled
