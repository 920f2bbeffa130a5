"""Single-flight across the cluster: equal queued runs, on any workers, share one execution.

A task with ``single_flight="cluster"`` keys its queued runs on name + canonical
payload. The first run to start takes a lease on the key (stored where the
resque locks are: the database, or ``LOCK_CACHE``) and runs the task: it is the
*leader*. A run that starts while the lease is held is a *follower*: it never
runs the task, but waits for the leader's outcome in the leader's row of the
run table, and records its own run as the leader's ended: succeeded with its
result, or failed with its error (then retried as the task's retry policy
says), or cancelled.

- The leader writes its end at once (not through the recorder's batches) and
  only then lets go of the lease: a follower that finds the lease free and the
  leader's row unfinished knows the leader died.
- The leader renews its lease every quarter of :data:`LEASE` from a thread of
  its own. A leader that dies (its worker killed, its host lost) stops
  renewing; the lease expires and the next follower to look takes it and runs
  the task, as leader.
- A follower waits in its pool slot for at most :data:`FOLLOW_FOR`, then is
  re-delayed as a run waiting for a lock is (the scheduler sends it again), so
  a pool whose every slot holds a follower frees them and cannot deadlock. The
  leader it follows is remembered under the lock storage's key
  ``taskkit:follows:<run id>``: a follower sent again after the leader ended
  still takes that leader's outcome, and does not start a run of its own.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery import Task as CeleryTask
from celery.exceptions import Retry
from django.db import connections
from django.utils import timezone

from ...definition import Task, TaskContext
from ...events import Step
from ...exceptions import RunFailed, WorkerLost, class_path
from ...models import FINISHED, RunStatus, TaskRun
from ..locks import acquire, holder, payload_digest, release, renew
from .delivery import not_run
from .message import tell
from .outcome import attempt_failed
from .recorder import upsert

logger = logging.getLogger("taskkit.worker")

#: How long a leader's lease lasts unless renewed (every quarter of it): how long
#: followers wait for a leader that died before one of them takes over.
LEASE = timedelta(seconds=10)
#: How long a follower waits in its pool slot before it is re-delayed.
FOLLOW_FOR = 5.0
#: How soon a re-delayed follower is sent again (up to twice this).
FOLLOW_AGAIN = timedelta(seconds=0.5)


#: A follower's end when its run is sent again later (see :attr:`Flight.followed`).
LATER = "later"


def flight_key(task: Task, payload: dict[str, Any]) -> str:
    """The lease key of the flight of ``task`` with ``payload`` (the whole payload)."""
    return f"taskkit:single_flight:{task.name}:{payload_digest(payload)}"


def _marker(run_id: str) -> str:
    return f"taskkit:follows:{run_id}"


@dataclass
class Flight:
    """This run's part in its flight: it leads (holds the lease), it followed another run
    (``followed``: how its run ended), or it takes no part."""

    key: str = ""
    owner: str = ""
    #: A follower's end, its run recorded: a :class:`~taskkit.models.RunStatus`, or
    #: ``"later"`` (sent again later: it waits on, or its retry is scheduled).
    followed: str = ""
    #: A follower's result, or its failure (as the leader's: the error and the traceback).
    result: Any = None
    failure: RunFailed | None = None
    #: When a follower ``"later"`` is sent again.
    again: datetime | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _renewer: threading.Thread | None = None

    @property
    def leads(self) -> bool:
        return bool(self.key)

    def follower_end(self, ctask: CeleryTask[Any, Any]) -> Any:
        """What a follower's delivery gives Celery: the shared result (a canvas goes on
        with it), the shared failure, its cancellation, or a retry, as a run waiting for
        its lock gives (it is sent again later, and a canvas goes on then)."""
        if self.followed == RunStatus.SUCCEEDED:
            return self.result
        if self.followed == LATER:
            cause: Any = self.failure  # the stubs want an Exception, or None
            raise Retry(exc=cause, when=self.again)
        if self.failure is not None:
            raise self.failure
        raise not_run(ctask, revoked=self.followed == RunStatus.CANCELLED)

    def lead(self) -> None:
        """Keep the lease while the run runs."""
        self._renewer = threading.Thread(target=self._renew, name="taskkit-flight", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        try:
            while not self._stop.wait(LEASE.total_seconds() / 4):
                try:
                    if not renew(self.key, self.owner, LEASE):
                        logger.warning("the lease of %s was lost to another run", self.key)
                        return
                except Exception:  # the database away: the next renewal tries again
                    logger.exception("could not renew the lease of %s", self.key)
        finally:
            connections.close_all()  # this thread's connections

    def land(self) -> None:
        """The run's outcome is written: let the followers take it."""
        if not self.leads:
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=10)
        release(self.key, self.owner)


def _owner(run_id: str, attempt: int) -> str:
    return f"{run_id}#{attempt}"


def _outcome(leader: str) -> TaskRun | None:
    """The leader's row once the leader's attempt ended; ``None`` while it runs (or died)."""
    run_id, _, attempt = leader.rpartition("#")
    try:
        row = TaskRun.objects.filter(pk=uuid.UUID(run_id)).first()
    except ValueError:  # not a run's id: a holder of another kind
        return None
    if row is None or not attempt.isdigit():
        return None
    tried = int(attempt)
    if row.attempt == tried and row.status not in FINISHED:
        return None
    if row.attempt < tried:
        return None
    if _entry(row, tried).get("exception") == class_path(WorkerLost("")):
        return None  # its worker was lost: the outcome is unknown, a follower takes over
    return row


def _entry(row: TaskRun, attempt: int) -> dict[str, Any]:
    """The history entry of ``attempt`` of ``row`` (empty if it did not fail)."""
    for entry in reversed(row.history or []):
        if isinstance(entry, dict) and entry.get("attempt") == attempt:
            return entry
    return {}


def take_off(
    task: Task,
    ctx: TaskContext,
    payload: dict[str, Any],
    row: dict[str, Any],
    *,
    shared: bool = True,
) -> Flight:
    """This run's flight: led by it (it runs the task), followed (it must not run the task:
    its run is recorded as the leader's ended, or it was re-delayed to follow on later), or
    none (the task does not share across workers, or ``shared`` is false).

    ``row`` is the run's row as it is written when the run is sent again later.
    """
    if not (shared and task.meta.shared_across_workers):
        return Flight()
    key, me = flight_key(task, payload), _owner(ctx.run_id, ctx.attempt)
    began = timezone.now()
    leader = holder(_marker(ctx.run_id))  # a leader it followed before it was re-delayed
    deadline = time.monotonic() + FOLLOW_FOR
    pause, noted = 0.05, False
    while True:
        if leader is not None and (ended := _outcome(leader)) is not None:
            return _follow(task, ctx, row, leader, ended, began)
        current = holder(key)
        if current is None or current == me:
            current = acquire(key, me, LEASE)
            if current is None:
                if leader is not None and (ended := _outcome(leader)) is not None:
                    release(key, me)  # the leader ended between the two looks
                    return _follow(task, ctx, row, leader, ended, began)
                if leader is not None:
                    release(_marker(ctx.run_id), leader)
                    logger.warning(
                        "%s %s takes over the flight of %s", task.name, ctx.run_id, leader
                    )
                flight = Flight(key, me)
                flight.lead()
                return flight
        if current != leader:  # the first look, or another follower took over a dead leader's
            if leader is not None:
                if (ended := _outcome(leader)) is not None:  # it ended between the two looks
                    return _follow(task, ctx, row, leader, ended, began)
                release(_marker(ctx.run_id), leader)
            leader = current
        if time.monotonic() >= deadline:
            return Flight(followed=LATER, again=_wait_again(task, ctx, row, leader))
        if not noted:
            _note(ctx, row, began)
            noted = True
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)


def _note(ctx: TaskContext, row: dict[str, Any], began: datetime) -> None:
    """Give a follower without a row a ``running`` one: if its worker dies while it waits,
    the sweep of lost workers settles it (a stored run's row was claimed already)."""
    if not TaskRun.objects.filter(pk=ctx.run_id).exists():
        upsert(ctx.run_id, {**row, "status": RunStatus.RUNNING, "started_at": began})


def _wait_again(task: Task, ctx: TaskContext, row: dict[str, Any], leader: str) -> datetime:
    """Free the pool slot: remember the leader, and be sent again shortly (at the time
    returned)."""
    acquire(_marker(ctx.run_id), leader, task.meta.lock_timeout)
    due = timezone.now() + FOLLOW_AGAIN * (1 + random.random())  # not for security
    upsert(
        ctx.run_id, {**row, "status": RunStatus.SCHEDULED, "scheduled_for": due, "sent_at": None}
    )
    logger.info("%s %s follows %s; looks again at %s", task.name, ctx.run_id, leader, due)
    return due


def _retryable(task: Task, exception: object) -> bool:
    """Whether the task's policy retries the leader's exception class (by its recorded path).

    The class is looked up among the modules this process imported (the task's
    own and what it imports), never imported on a row's word; one not found is
    not retried.
    """
    module, _, name = str(exception).rpartition(".")
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and issubclass(cls, task.meta.retry.retry_on)


def _follow(
    task: Task,
    ctx: TaskContext,
    row: dict[str, Any],
    leader: str,
    ended: TaskRun,
    began: datetime,
) -> Flight:
    """Record this run as the leader's attempt ended."""
    now = timezone.now()
    release(_marker(ctx.run_id), leader)
    fields: dict[str, Any] = {**row, "started_at": began}
    done = {name: value for name, value in fields.items() if name != "canvas"}  # no resend
    tried = int(leader.rpartition("#")[2])
    duration = (now - began).total_seconds()
    logger.info("%s %s followed %s", task.name, ctx.run_id, leader)
    if ended.attempt == tried and ended.status == RunStatus.SUCCEEDED:
        done.update(
            status=RunStatus.SUCCEEDED, result=ended.result, error="", traceback="", finished_at=now
        )
        upsert(ctx.run_id, done)
        tell(Step.SUCCEEDED, task, ctx, row["worker"], duration=duration)
        return Flight(followed=RunStatus.SUCCEEDED, result=ended.result)
    if ended.attempt == tried and ended.status == RunStatus.CANCELLED:
        done.update(status=RunStatus.CANCELLED, error=ended.error, finished_at=now)
        upsert(ctx.run_id, done)
        tell(Step.CANCELLED, task, ctx, row["worker"], error=ended.error)
        return Flight(followed=RunStatus.CANCELLED)
    entry = _entry(ended, tried)
    error = str(entry.get("error") or ended.error)
    exception = str(entry.get("exception", ""))
    history = TaskRun.objects.filter(pk=ctx.run_id).values_list("history", flat=True).first()
    retry = ctx.attempt < task.meta.retry.max_attempts and _retryable(task, exception)
    failed = attempt_failed(task, ctx.attempt, error, exception, history or [], now, retry=retry)
    fields.update(traceback=ended.traceback, **failed)
    upsert(ctx.run_id, fields)
    retried = fields["status"] == RunStatus.SCHEDULED
    step = Step.RETRIED if retried else Step.FAILED
    tell(step, task, ctx, row["worker"], duration=duration, error=error)
    failure = RunFailed(task.name, ctx.run_id, error, ended.traceback)
    if retried:
        return Flight(followed=LATER, failure=failure, again=fields["scheduled_for"])
    return Flight(followed=RunStatus.FAILED, failure=failure)
