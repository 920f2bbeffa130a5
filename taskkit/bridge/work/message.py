"""A Celery message read back as a taskkit run: its id, its worker, its context and the
fields of its row, whether its arguments are a taskkit message's at all, and the steps
of its run told (:func:`tell`)."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from celery import Task as CeleryTask

from ...definition import Scope, Source, Task, TaskContext
from ...events import Step, emit
from ...exceptions import InvalidMessage
from ...models import TaskRun
from ...quarantine import item_id
from .. import broadcast
from .recorder import fitted, recorder


def worker_name(ctask: CeleryTask[Any, Any]) -> str:
    """The Celery node name of the worker running ``ctask``."""
    return str(getattr(ctask.request, "hostname", None) or socket.gethostname())


def message_id(fields: dict[str, Any], celery_id: str | None) -> str:
    """The run id the message carries (the Celery task id when the context has none)."""
    return str(fields.get("run_id") or celery_id)


def run_row(
    ctask: CeleryTask[Any, Any], task: Task, ctx: TaskContext, sent_id: str, payload: Any
) -> dict[str, Any]:
    """The fields of a run's row that the worker knows from the message."""
    row = {
        "name": task.name,
        "queue": ctx.queue,
        "payload": payload,
        "attempt": ctx.attempt,
        "source": str(ctx.source),
        "worker": worker_name(ctask),
    }
    if task.meta.scope is Scope.ALL:
        row["group_id"] = sent_id
    return row


T = TypeVar("T")


def _checked(field: str, convert: Callable[[Any], T], value: Any) -> T:
    """``convert(value)``, or :class:`InvalidMessage` naming the context's ``field``."""
    try:
        return convert(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidMessage(
            f"The message's context has a {field} of the wrong kind "
            f"({str(value)[:100]!r}: {exc}); it was not run."
        ) from exc


def row_id(run_id: str) -> str:
    """``run_id`` if it is a UUID, as a row's id must be; else one made of its text, so the
    failure of a hand-made message whose run id is no UUID is still recorded."""
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return item_id(run_id.encode(errors="surrogatepass"))  # JSON may carry a lone surrogate


#: The largest number an integer column of the run table (a ``PositiveIntegerField``: the
#: attempt, the progress) holds on every database.
COLUMN_MAX = 2_147_483_647


def stored_progress(done: int, total: int) -> tuple[int, int]:
    """``done`` of ``total`` as the row stores them: counts past :data:`COLUMN_MAX` (the
    bytes of a large file) scaled down to it, their ratio kept, instead of refused by
    PostgreSQL in the middle of the run."""
    if total <= COLUMN_MAX:
        return done, total
    return done * COLUMN_MAX // total, COLUMN_MAX


def _attempt(value: Any) -> int:
    """An attempt's number: from 1 to what its column holds."""
    attempt = int(value)
    if not 1 <= attempt <= COLUMN_MAX:
        raise ValueError(f"an attempt is numbered from 1 to {COLUMN_MAX:,}")
    return attempt


def run_context(
    ctask: CeleryTask[Any, Any], task: Task, fields: dict[str, Any], run_id: str
) -> TaskContext:
    """The run's context: its id (a worker's own under ``scope="all"``), attempt, queue and
    source, and a progress reporter that writes to its row.

    :class:`InvalidMessage` names a field of the wrong kind, which only a hand-made
    message carries: the run is then recorded as failed, as for a wrong payload.
    """
    _checked("run_id", uuid.UUID, run_id)
    attempt = _checked("attempt", _attempt, fields.get("attempt", 1))
    source = _checked("source", Source, fields.get("source", Source.WORKER))
    scheduled = fields.get("scheduled_time")
    scheduled_time = (
        _checked("scheduled_time", datetime.fromisoformat, scheduled) if scheduled else None
    )
    delivery = getattr(ctask.request, "delivery_info", None) or {}
    if task.meta.scope is Scope.ALL:  # every worker runs it: each run gets its own id
        run_id = broadcast.worker_run_id(run_id, worker_name(ctask))

    def report(done: int, total: int) -> None:
        recorder.written(run_id)
        done, total = stored_progress(done, total)
        TaskRun.objects.filter(pk=run_id).update(progress_done=done, progress_total=total)

    return TaskContext(
        run_id=run_id,
        attempt=attempt,
        # a hand-made message's queue may be text no column stores: the row gets what fits
        queue=fitted(
            "queue", str(fields.get("queue") or delivery.get("routing_key") or task.meta.queue)
        ),
        source=source,
        scheduled_time=scheduled_time,
        logger=logging.getLogger(f"taskkit.tasks.{task.name}"),
        progress_reporter=report,
    )


#: The arguments of a taskkit message, in order.
MESSAGE_ARGUMENTS = ("payload", "context")


def check_shape(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """:class:`InvalidMessage` unless the arguments are a taskkit message's (payload, context)."""
    extra = sorted(set(kwargs) - set(MESSAGE_ARGUMENTS))
    twice = set(MESSAGE_ARGUMENTS[: len(args)]) & set(kwargs)
    if len(args) > len(MESSAGE_ARGUMENTS) or extra or twice:
        got = ", ".join([f"{len(args)} positional argument(s)"] * bool(args) + extra)
        raise InvalidMessage(
            f"A taskkit message carries a payload and a context, not {got}. "
            "Enqueue with taskkit (enqueue, runtask --enqueue), or send "
            """--kwargs '{"payload": {...}}' with celery call."""
        )


def tell(step: Step, task: Task, ctx: TaskContext, worker: str, **details: Any) -> None:
    """Tell a step of the run of ``task`` with ``ctx`` on ``worker`` (see :mod:`taskkit.events`)."""
    emit(step, ctx.run_id, task.name, ctx.queue, ctx.attempt, worker=worker, **details)
