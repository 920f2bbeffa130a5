"""One delivery of a run's message, before its handler runs: may it start at all?

- The database may be away: each step waits for it (:func:`with_database`), and
  after ``DATABASE_WAIT`` a step before the handler hands the message back to
  the broker (:func:`hand_back`).
- The delivery may come too late or twice: the run was cancelled while queued,
  or this attempt finished or started already (a Beat's batch sent again, a
  broker's redelivery). :func:`admit` says so, and claims a stored run's row
  for this delivery with a token (:func:`claim_token`) that survives a lost
  answer and a hand-back. The claim writes the whole ``running`` row, so a
  claimed run needs no other statement until it ends.
- An idempotent attempt that started already starts again (its worker was
  lost), but at most :data:`MAX_STARTS` times: the restarts are counted on its
  row, and :func:`admit` then says :attr:`~Admission.LOST`.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn, TypeVar

from celery import Task as CeleryTask
from celery.exceptions import Ignore
from django.db import InterfaceError, OperationalError, close_old_connections, connections
from django.db.models import F
from django.utils import timezone

from ...definition import Task, TaskContext
from ...events import Step
from ...exceptions import RunRevoked
from ...models import FINISHED, RunStatus, TaskRun
from .cancellations import cancelled
from .message import tell
from .recorder import upsert
from .row_sql import update_unless

logger = logging.getLogger("taskkit.worker")

#: How long a run waits for an unreachable database (a restart, a failover) before it
#: hands its message back to the broker.
DATABASE_WAIT = 30.0
#: When a message handed back is delivered again.
HAND_BACK_AFTER = 5.0
#: How many times one attempt of an idempotent task is started when the worker running it
#: is lost each time (its process killed: the out-of-memory killer, a crash in native
#: code): the delivery after that fails the attempt with ``WorkerLost``.
MAX_STARTS = 3

T = TypeVar("T")


def with_database(
    step: Callable[[], T], hand_back: Callable[[Exception], NoReturn] | None = None
) -> T:
    """``step()``, tried again while the database is unreachable.

    The message of a run is acknowledged when the run starts: a run that raised
    because the database was away would be dropped without a trace. It waits
    instead; a broken connection is closed, and the next try opens another.
    After ``DATABASE_WAIT`` a step before the handler ran calls ``hand_back``,
    which gives the message back to the broker; a step after it (the run's
    outcome) has none and goes on trying, as running the handler again would run
    the task twice.
    """
    deadline = time.monotonic() + DATABASE_WAIT
    pause = 0.1
    while True:
        try:
            return step()
        except (OperationalError, InterfaceError) as exc:
            if hand_back is not None and time.monotonic() >= deadline:
                hand_back(exc)
            logger.warning("the database is unreachable (%s); trying again in %.1f s", exc, pause)
            close_old_connections()
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def drop_connections(ctask: CeleryTask[Any, Any]) -> None:
    """Cancel the query a soft time limit stopped, and close this thread's connections.

    The limit is an exception raised from a signal handler, maybe during a query.
    The database goes on running it (and holding its locks) for nobody, and on
    PostgreSQL the connection is broken for good ("another command is already in
    progress"), though Django still takes it for usable: kept for the next tasks
    (``CELERY_DB_REUSE_MAX``), its next statement would fail, and the run's outcome
    would first wait as for a database away. A connection in a transaction (a run
    called eagerly inside a test's) is left alone.
    """
    if getattr(ctask.request, "is_eager", False):
        return
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            continue
        raw = connection.connection
        cancel = getattr(raw, "cancel_safe", None) or getattr(raw, "cancel", None)  # psycopg
        if cancel is not None:
            with contextlib.suppress(Exception):  # nothing to cancel, or the database away
                cancel()
        connection.close()


def hand_back(ctask: CeleryTask[Any, Any], exc: Exception, claim: str = "") -> NoReturn:
    """Give the message back to the broker, to be delivered again shortly.

    Celery's ``retry`` sends the same message (same run id, payload and context)
    with a countdown and acknowledges this one; nothing of the run has happened.
    Its context carries ``claim``, the token of this delivery's claim of the
    run's row: if the claim reached the database unseen, the next delivery
    knows the row as its own.
    """
    logger.warning(
        "%s %s: the database has been unreachable for %.0f s; the message goes back to the broker",
        ctask.name,
        ctask.request.id,
        DATABASE_WAIT,
    )
    args, kwargs = list(ctask.request.args or ()), dict(ctask.request.kwargs or {})
    if claim and isinstance(kwargs.get("context"), dict):
        kwargs["context"] = {**kwargs["context"], "claim": claim}
    elif claim and len(args) > 1 and isinstance(args[1], dict):
        args[1] = {**args[1], "claim": claim}
    raise ctask.retry(args=tuple(args), kwargs=kwargs, exc=exc, countdown=HAND_BACK_AFTER)


class Admission(enum.Enum):
    """What :func:`admit` says of a delivery."""

    #: Not to run: this attempt started or finished already (another delivery of it).
    SKIP = enum.auto()
    #: Not to run: deleted while queued; its row says ``cancelled``.
    CANCELLED = enum.auto()
    #: To run; its row, if it has one, is not written ``running`` for this delivery yet.
    RUN = enum.auto()
    #: To run; its row was claimed just now, written ``running`` with the run's fields and
    #: the claim's time as its start.
    CLAIMED = enum.auto()
    #: Not to run: an idempotent attempt whose worker was lost in each of its
    #: :data:`MAX_STARTS` starts; the caller fails it with ``WorkerLost``.
    LOST = enum.auto()


def not_run(ctask: CeleryTask[Any, Any], *, revoked: bool = False) -> Ignore:
    """What ends a delivery that did not run the task and has no result: raise it.

    Returning ``None`` would make Celery store a success under the run's id, over
    what the delivery that ran it stored in a result backend of the project's own,
    tell its monitors (Flower) that it succeeded, and go on with a chain.
    :class:`~celery.exceptions.Ignore` stores nothing and sends nothing after the
    step. A run recorded cancelled (``revoked``) is revoked to Celery, as Celery's
    own revoke does: marked so in its result backend, where a chord learns that
    this part will not come, and told to monitors (:class:`~.request.GuardedRequest`).
    """
    if not revoked:
        return Ignore()
    reason, run_id = "cancelled", str(ctask.request.id)
    try:
        ctask.backend.mark_as_revoked(run_id, reason, request=ctask.request)
    except Exception:  # the project's result backend away: the run's row says it anyway
        logger.exception("could not mark run %s revoked in the result backend", run_id)
    return RunRevoked(reason)


def admit(
    task: Task,
    ctx: TaskContext,
    fields: dict[str, Any],
    row: dict[str, Any],
    *,
    stored: bool,
    redelivered: bool = False,
    claim: datetime | None = None,
) -> Admission:
    """Whether to run: not if cancelled while queued, or this attempt started already.

    A stored run's row tells both, and is claimed: one atomic update, tried first
    as it is all a usual delivery needs, moves it to ``running`` for this attempt
    (a run cancelled while queued is then written cancelled), so of two deliveries of one
    attempt (a scheduler killed after the broker took its batch but before its
    claim committed sends the batch again) only one starts. The update writes
    ``row`` too, all the ``running`` row holds, so the claim is the run's start
    on the record. A delivery the
    broker marks redelivered (a worker's restore, RabbitMQ's requeue) is checked
    against the row too, if one was written. An attempt that finished is left
    as it is; one that started is not run twice unless the task is idempotent.

    ``claim`` (the claim's ``started_at``, the same for every try of this step
    and carried by a handed-back message) tells this delivery's own claim from
    another's: a claim whose answer a cut connection lost is found again. Such a
    claim, and one made with a carried token (its time is the first try's), is
    :attr:`~Admission.RUN`: the caller writes the ``running`` row, with its start.
    """
    claim = claim or timezone.now()
    # The claim first: it is the one statement the usual delivery needs; the reads that
    # tell why a claim failed are for the unusual ones.
    running = {**row, "status": RunStatus.RUNNING, "started_at": claim}
    taken = (*FINISHED, RunStatus.RUNNING)
    claimed = update_unless(ctx.run_id, ctx.attempt, taken, running) if stored else 0
    if not claimed:
        if stored and _claimed_by(ctx, claim):  # this delivery's own claim, its answer lost
            return Admission.RUN
        if (stored or redelivered) and (ended := started_already(task, ctx)) is not None:
            return ended  # by another delivery, or cancelled
    rule = cancelled(ctx.run_id, task.name, ctx.queue, row["payload"], fields.get("enqueued_at"))
    if rule is not None:
        error = f"Deleted while queued: {rule}."
        upsert(
            ctx.run_id,
            {**row, "status": RunStatus.CANCELLED, "finished_at": timezone.now(), "error": error},
        )
        tell(Step.CANCELLED, task, ctx, row["worker"], error=error)
        return Admission.CANCELLED
    return Admission.CLAIMED if claimed and not fields.get("claim") else Admission.RUN


def _claimed_by(ctx: TaskContext, claim: datetime) -> bool:
    """Whether the row is this attempt's, running since ``claim`` (a query built only when
    asked: building it costs more than a no-op run)."""
    return TaskRun.objects.filter(
        pk=ctx.run_id, attempt=ctx.attempt, status=RunStatus.RUNNING, started_at=claim
    ).exists()


def claim_token(fields: dict[str, Any]) -> datetime:
    """This delivery's claim token: a handed-back message's, or now."""
    carried = fields.get("claim")
    try:
        return datetime.fromisoformat(carried) if isinstance(carried, str) else timezone.now()
    except ValueError:
        return timezone.now()


def started_already(task: Task, ctx: TaskContext) -> Admission | None:
    """What the row says of this attempt: cancelled, or finished or (not idempotent) started
    (:attr:`~Admission.SKIP`), or started too often (:attr:`~Admission.LOST`); ``None``:
    none of these."""
    found = (
        TaskRun.objects.filter(pk=ctx.run_id).values_list("status", "attempt", "restarts").first()
    )
    if found is None:
        return None
    status, attempt, restarts = found
    if status == RunStatus.CANCELLED:
        logger.info("%s %s was cancelled before it ran; skipped", task.name, ctx.run_id)
        return Admission.CANCELLED
    if attempt != ctx.attempt:
        return None
    if status in FINISHED:
        logger.info("%s %s attempt %s ran already; skipped", task.name, ctx.run_id, attempt)
        return Admission.SKIP
    if status == RunStatus.RUNNING and not task.meta.idempotent:
        logger.warning(
            "%s %s attempt %s was delivered again after it started; not run twice "
            "(the task is not idempotent)",
            task.name,
            ctx.run_id,
            attempt,
        )
        return Admission.SKIP
    if status == RunStatus.RUNNING:
        return _restart(task, ctx, restarts)
    return None


def _restart(task: Task, ctx: TaskContext, restarts: int) -> Admission | None:
    """An idempotent attempt delivered again after it started: the worker running it was
    lost (or runs it still, past the broker's visibility timeout).

    Celery puts such a message back for ever, so a run that kills every process it
    starts in would go round the workers for good. The starts are counted on the
    row: this one is counted and runs (``None``), unless the attempt started
    :data:`MAX_STARTS` times already (:attr:`~Admission.LOST`).
    """
    if restarts + 1 >= MAX_STARTS:
        return Admission.LOST
    TaskRun.objects.filter(pk=ctx.run_id, attempt=ctx.attempt, status=RunStatus.RUNNING).update(
        restarts=F("restarts") + 1
    )
    logger.warning(
        "%s %s attempt %s starts again (start %d of at most %d): its worker was lost during it",
        task.name,
        ctx.run_id,
        ctx.attempt,
        restarts + 2,
        MAX_STARTS,
    )
    return None
