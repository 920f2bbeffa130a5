"""A run's steps, told twice: one line on the ``taskkit.runs`` logger and one signal.

The bridge and the scheduler call :func:`emit` where a step happens; this
module imports neither (nor the models), so any layer may call it. The fields
go to the log record as ``extra`` keys prefixed ``taskkit_`` (no clash with a
``LogRecord`` attribute or another library's keys, so a JSON formatter emits
them as they are) and to the signal's receivers as keyword arguments without
the prefix.

When nobody listens and the logger is not enabled for the step's level, an
emit returns after one check: it sits on every enqueue and every run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any

from django.db import transaction
from django.dispatch import Signal

from . import signals

logger = logging.getLogger("taskkit.runs")


class Step(StrEnum):
    ENQUEUED = "enqueued"
    PROMOTED = "promoted"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    RETRIED = "retried"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"


#: Each step's signal and log level: failures are warnings, the rest is the usual flow.
ROUTES: dict[Step, tuple[Signal, int]] = {
    Step.ENQUEUED: (signals.run_enqueued, logging.INFO),
    Step.PROMOTED: (signals.run_promoted, logging.INFO),
    Step.STARTED: (signals.run_started, logging.INFO),
    Step.SUCCEEDED: (signals.run_succeeded, logging.INFO),
    Step.RETRIED: (signals.run_retried, logging.WARNING),
    Step.FAILED: (signals.run_failed, logging.WARNING),
    Step.CANCELLED: (signals.run_cancelled, logging.INFO),
    Step.LOST: (signals.run_lost, logging.WARNING),
}

#: The prefix of the log record's ``extra`` keys.
PREFIX = "taskkit_"


def wanted(step: Step) -> bool:
    """Whether a receiver or the logger would see ``step``: else an emit does nothing."""
    signal, level = ROUTES[step]
    return bool(signal.receivers) or logger.isEnabledFor(level)


def emit(
    step: Step,
    run_id: str,
    task: str,
    queue: str,
    attempt: int | None,
    *,
    duration: float | None = None,
    worker: str | None = None,
    error: str | None = None,
    waited: float | None = None,
) -> None:
    """Log ``step`` of run ``run_id`` and send its signal; a receiver's error is only logged.

    ``attempt`` is the attempt the step is about (``None`` when not known),
    ``duration`` the seconds it ran (succeeded, retried, failed) or had run
    when its worker was found lost, ``worker`` the Celery node name, ``waited``
    the seconds its message waited in the queue before it started (started only).
    """
    signal, level = ROUTES[step]
    log = logger.isEnabledFor(level)
    if not (log or signal.receivers):
        return
    fields = {
        "step": str(step),
        "run_id": run_id,
        "task": task,
        "queue": queue,
        "attempt": attempt,
        "duration": duration,
        "worker": worker,
        "error": error,
        "waited": waited,
    }
    if log:
        logger.log(level, *_message(fields), extra={PREFIX + k: v for k, v in fields.items()})
    if signal.receivers:
        signal.send_robust(None, **fields)  # Django logs a receiver's error (django.dispatch)


def queued_for(enqueued_at: object, started: datetime) -> float | None:
    """Seconds from a message's ``enqueued_at`` (its context's ISO 8601 text) to ``started``.

    ``None`` for a message without the time (sent by an older taskkit, or by
    hand); 0 rather than a negative wait when the sender's clock runs ahead.
    """
    if not isinstance(enqueued_at, str):
        return None
    try:
        return max((started - datetime.fromisoformat(enqueued_at)).total_seconds(), 0.0)
    except (TypeError, ValueError):  # not an ISO time, or a naive one
        return None


def _message(fields: Mapping[str, object]) -> tuple[object, ...]:
    """The line's format and its arguments, formatted only if a handler takes the record."""
    text = "%s %s %s (queue %s, attempt %s)"
    args = [fields[k] for k in ("task", "run_id", "step", "queue", "attempt")]
    if fields["duration"] is not None:
        text, args = text + " in %.3f s", [*args, fields["duration"]]
    if fields["waited"] is not None:
        text, args = text + " after %.3f s queued", [*args, fields["waited"]]
    if fields["worker"]:
        text, args = text + " on %s", [*args, fields["worker"]]
    if fields["error"]:
        text, args = text + ": %s", [*args, fields["error"]]
    return (text, *args)


def emit_on_commit(step: Step, *args: Any, **fields: Any) -> None:
    """:func:`emit` once the current transaction commits (at once outside one).

    For a step that is a database change: a rollback undoes the change and tells nobody.
    """
    if wanted(step):
        transaction.on_commit(partial(emit, step, *args, **fields))
