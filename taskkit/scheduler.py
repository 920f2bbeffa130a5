"""taskkit's Beat scheduler: ``celery beat --scheduler taskkit.scheduler:Scheduler``.

It is django-celery-beat's ``DatabaseScheduler`` (schedules editable in the
admin) plus:

- the sync of periodic tasks from the code at start (:mod:`taskkit.scheduling.periodic`);
- periodic ticks of taskkit tasks sent through taskkit, once per tick whoever
  sends it, with ``scheduledTime`` = the tick's time; interval ticks are aligned
  to the clock (multiples of the interval), so they never drift; cron ticks are
  decided by :mod:`taskkit.scheduling.cron` (its DST rules), not Celery's crontab;
- every enabled crontab row loaded (see :meth:`Scheduler.crontab_exclude_query`);
- promotion of due delayed runs and retries, and the outbox resend;
- a leader lease, so two Beats can run and only one sends;
- the sweep of workers that died outright (:mod:`taskkit.bridge.work.heartbeat`);
- waking at least once a second, sooner when a delayed run falls due.
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.backends.base import BaseBackend, DisabledBackend
from celery.beat import event_t
from celery.schedules import crontab, schedstate
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler

from .bridge.send.enqueue import enqueue_tick
from .bridge.work import heartbeat
from .registry import get_task
from .scheduling import lease, next_due, promote_due, resend_outbox
from .scheduling.cron import fire_times, floor_minute
from .scheduling.periodic import PREFIX, sync_periodic
from .upstream import BeatHooks

logger = logging.getLogger("taskkit.scheduler")

#: The longest the scheduler sleeps between two looks at the delayed table.
MAX_SLEEP = 1.0
#: Missed interval ticks younger than this are sent on catch-up: a leader's hand-over.
CATCH_UP = 2 * lease.LEASE_DURATION


def interval_ticks(every: timedelta, now: datetime, last_sent: datetime | None) -> list[datetime]:
    """The interval ticks to send now: the same for every scheduler, never drifting.

    Ticks are the multiples of the interval since the Unix epoch (a 60 s task ticks
    on whole minutes). Sent are the ticks after ``last_sent``, as far back as
    :data:`CATCH_UP` (what a leader's hand-over can miss); a tick another scheduler
    sent already is skipped by :func:`~taskkit.bridge.send.enqueue.enqueue_tick`. With
    nothing sent before (a cold start), only the latest tick is sent, as Beat would.
    """
    step = max(1, round(every.total_seconds()))
    latest = int(now.timestamp()) // step * step
    if last_sent is None:
        return [datetime.fromtimestamp(latest, UTC)]
    start = max((now - CATCH_UP).timestamp(), last_sent.timestamp())
    return [
        datetime.fromtimestamp(tick, UTC)
        for tick in range(latest, int(start) - step, -step)
        if tick > start
    ][::-1]


#: How far back a cron schedule's missed ticks are looked for (a Beat that was down).
CRON_LOOKBACK = timedelta(days=7)


def seconds_to_next_tick(every: timedelta, now: datetime) -> float:
    """Seconds from ``now`` to the interval's next clock-aligned tick."""
    step = max(1, round(every.total_seconds()))
    return step - now.timestamp() % step


def owned_interval(entry: Any) -> bool:
    """Whether ``entry`` is one of taskkit's interval schedules."""
    return str(entry.name).startswith(PREFIX) and not isinstance(entry.schedule, crontab)


def owned_cron(entry: Any) -> bool:
    """Whether ``entry`` is one of taskkit's crontab schedules."""
    return str(entry.name).startswith(PREFIX) and isinstance(entry.schedule, crontab)


def needs_backend_cleanup(app: Any) -> bool:
    """Whether ``app``'s result backend keeps results that only a cleanup task expires."""
    backend: BaseBackend = app.backend
    return not isinstance(backend, DisabledBackend) and not backend.supports_autoexpire


class Scheduler(BeatHooks, DatabaseScheduler):  # type: ignore[misc]  # django-celery-beat is untyped
    """Beat's database scheduler with taskkit's periodic ticks, delayed runs and lease."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leading = False
        self.sent: dict[str, datetime] = {}  # the last tick this process sent, per schedule
        self.cron_checked: dict[str, datetime] = {}  # cron minutes looked at, up to, per schedule
        self.cron_due: dict[str, datetime] = {}  # the cron tick is_due found, for apply_async
        self.leading_since = timezone.now()
        self.took_over = False  # from a dead leader: the ticks of the gap are owed
        self.swept_at = 0.0  # time.monotonic() of the last sweep of lost workers
        super().__init__(*args, **kwargs)
        self.max_interval = min(float(getattr(self, "max_interval", MAX_SLEEP)), MAX_SLEEP)
        self.sync_every_tasks = 1  # last_run_at reaches the database after every tick

    def crontab_exclude_query(self) -> Q:
        """Load every enabled crontab schedule.

        django-celery-beat 2.9 leaves out crontab rows whose hour is more than two
        hours from now, converting time zones with the offset of a fixed winter
        date; a row left out is not loaded again until the schedule changes, so a
        daily task could never fire, and in summer the window is an hour off
        (django-celery-beat issues #916 and #956). Excluding nothing avoids both.
        """
        return Q(pk__in=[])

    def install_default_entries(self, data: Any) -> None:
        """Celery's nightly ``celery.backend_cleanup`` only where a result backend needs it.

        django-celery-beat adds it whenever ``result_expires`` is set, Celery's
        default, and writes it to the periodic task table: with no result backend
        it is a stray task in the admin that deletes nothing. A project that lists
        it in ``beat_schedule`` still gets it from there.
        """
        if needs_backend_cleanup(self.app):
            super().install_default_entries(data)

    def setup_schedule(self) -> None:
        result = sync_periodic()
        if result.changed:
            logger.info("Periodic tasks synced: %s", result)
        super().setup_schedule()

    def last_sent(self, entry: Any, now: datetime) -> datetime | None:
        """The last tick of ``entry`` sent: by this process, or just before by a dead leader.

        A Beat that took over from a dead leader owes the ticks of the gap even
        when the leader died before saving its last ticks: it looks back from
        :attr:`leading_since` (the take-over, less :data:`CATCH_UP`); ticks the
        leader did send are skipped by their run ids.
        """
        if entry.name in self.sent:
            return self.sent[entry.name]
        fallback = self.leading_since if self.took_over else None
        if not getattr(entry, "total_run_count", 0):  # never ran: last_run_at is Beat's "now"
            return fallback
        last: datetime | None = entry.last_run_at
        if last is not None and timezone.is_naive(last):
            last = timezone.make_aware(last, UTC)
        return last if last is not None and now - last <= CATCH_UP else fallback

    def _cron_start(self, entry: Any, now: datetime) -> datetime:
        """Where this process starts looking for a cron schedule's fired minutes."""
        last: datetime | None = entry.last_run_at if getattr(entry, "total_run_count", 0) else None
        if last is None:  # never sent: from when this Beat leads (less a hand-over's gap)
            return self.leading_since
        if timezone.is_naive(last):
            last = timezone.make_aware(last, UTC)
        return max(last, now - CRON_LOOKBACK)  # a restart looks back for missed ticks

    def _cron_is_due(self, entry: Any, now: datetime) -> Any:
        """Due when a cron minute fired since the last look (missed ones: the latest, once)."""
        checked = self.cron_checked.get(entry.name) or self._cron_start(entry, now)
        zone = getattr(entry.schedule, "tz", None) or timezone.get_default_timezone()
        ticks = fire_times(entry.schedule, zone, checked, now)
        self.cron_checked[entry.name] = now
        if ticks:
            self.cron_due[entry.name] = ticks[-1]
        return schedstate(bool(ticks), 60 - now.second - now.microsecond / 1e6)

    def populate_heap(self, *args: Any, **kwargs: Any) -> None:
        """Check taskkit's schedules at once: their own ``is_due`` says when next.

        Beat orders its heap by what Celery's schedule objects answer, which for a
        crontab that never ran is the next minute after the row was loaded; a tick
        that taskkit's rules still owe (a hand-over's) would wait a minute for it.
        """
        super().populate_heap(*args, **kwargs)
        heap: list[Any] = [
            event_t(self.when(event[2], 0), event[1], event[2])
            if str(event[2].name).startswith(PREFIX)
            else event
            for event in self.heap
        ]
        heapq.heapify(heap)
        self.heap = heap

    def is_due(self, entry: Any) -> Any:
        """taskkit's schedules: interval ones on clock-aligned ticks, cron ones per minute."""
        if owned_cron(entry):
            return self._cron_is_due(entry, timezone.now())
        if not owned_interval(entry):
            return super().is_due(entry)
        now = timezone.now()
        every = entry.schedule.run_every
        due = bool(interval_ticks(every, now, self.last_sent(entry, now)))
        return schedstate(due, seconds_to_next_tick(every, now))

    def apply_async(
        self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        """Send a tick: taskkit's own schedules through taskkit, the rest as Beat does."""
        if not str(entry.name).startswith(PREFIX):
            return super().apply_async(entry, producer, advance, **kwargs)
        if advance:
            self.reserve(entry)
        now = timezone.now()
        if owned_interval(entry):
            ticks = interval_ticks(entry.schedule.run_every, now, self.last_sent(entry, now))
        else:
            ticks = [self.cron_due.pop(entry.name, floor_minute(now))]
        task = get_task(entry.task)
        handles = [enqueue_tick(task, entry.name, tick) for tick in ticks]
        if ticks:
            self.sent[entry.name] = ticks[-1]
        self.count_sent()  # with sync_every_tasks = 1: last_run_at is saved now
        sent = [handle for handle in handles if handle is not None]
        logger.debug("%s: ticks %s, %s sent from here", entry.name, ticks, len(sent))
        return sent[-1] if sent else None

    def _take_lead(self) -> bool:
        previous = None if self.leading else lease.holder(lease.BEAT)
        leading = lease.hold(lease.BEAT, self.identity)
        if leading and not self.leading:  # new leader: read the schedule state afresh
            logger.info("Scheduler %s leads", self.identity)
            self.reread_schedule()
            self.cron_checked.clear()  # the last leader's sends are in last_run_at
            # taking over from a dead leader: the ticks of the gap are still owed
            handover = previous is not None and previous != self.identity
            self.took_over = handover
            self.leading_since = timezone.now() - (CATCH_UP if handover else timedelta(0))
        self.leading = leading
        return leading

    def tick(self, *args: Any, **kwargs: Any) -> float:
        close_old_connections()
        try:
            if not self._take_lead():
                return MAX_SLEEP
        except Exception:  # the database may be away for a moment; Beat must go on
            logger.exception("Could not take the scheduler lease; trying again shortly")
            self.leading = False
            return MAX_SLEEP
        delay = float(super().tick(*args, **kwargs))
        try:
            promoted = promote_due()
            resend_outbox()
            due = next_due()
        except Exception:
            logger.exception("Promoting delayed runs failed; trying again shortly")
            return MAX_SLEEP
        self._sweep()
        if promoted:
            return 0.0
        if due is not None:
            delay = min(delay, max((due - timezone.now()).total_seconds(), 0.0))
        return min(delay, MAX_SLEEP)

    def _sweep(self) -> None:
        """Settle the runs of lost workers, every heartbeat interval."""
        if time.monotonic() - self.swept_at < heartbeat.interval():
            return
        self.swept_at = time.monotonic()
        try:
            heartbeat.sweep()
        except Exception:
            logger.exception("Sweeping the runs of lost workers failed; trying again shortly")

    def close(self) -> None:
        """Save the last ticks' state, then let go of the lease; never raise.

        Celery calls this from Beat's ``SIGTERM`` handler, before the handler's
        ``SystemExit``: an error raised here (the database away, or closed under
        the tick the signal interrupted) went into that tick instead, and Beat
        went on, deaf to the signal. A lease not released expires by itself.
        """
        for step, what in (
            (super().close, "save the schedule"),
            (self._release, "release its lease"),
        ):
            try:
                step()
            except Exception:
                logger.exception("Beat is closing: could not %s; going on", what)

    def _release(self) -> None:
        lease.release(lease.BEAT, self.identity)
