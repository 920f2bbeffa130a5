"""The worker's main process never dies on a message of one of taskkit's tasks.

Two steps of a message run in the worker's main process, and Celery treats
an error in either as unrecoverable: the worker exits, the message goes back
to the broker, and every restart dies on it again.

- Reading the message into a request: an envelope whose body is not Celery's
  ``[args, kwargs, embed]`` (``{"foo": 1}``, ``[1, 2, 3]``, ``[1, 2, {}]``) fails
  there, or later, outside the task's body, with nothing recorded. So do time
  limits that are no numbers of seconds (its ``timelimit`` header): a prefork
  pool sets its timers in the main process when the child takes the run, and
  ``["abc", "x"]`` raised there. An ``eta`` out of range (year 9999, 14 hours
  west) was rejected by Celery with a log line, and the run lost; an ``id``
  that is no string raised when Celery looked it up among the revoked runs.
- Handing it to a pool process: a prefork worker pickles its arguments, and a
  payload nested thousands deep makes pickling raise ``RecursionError``.

:class:`GuardedRequest`, the Celery request class of taskkit's tasks, catches
both: the run is recorded as failed with the reason (the runs admin and
``taskqueue failed`` show it, and can remove it), the message leaves the
queue, and the worker takes the next one.
"""

from __future__ import annotations

import logging
import math
import uuid
from datetime import datetime
from typing import Any

from celery.exceptions import InvalidTaskError, TaskRevokedError
from celery.utils.time import timezone
from celery.worker.request import Request
from celery.worker.state import task_ready
from kombu.asynchronous.timer import to_timestamp

from ...exceptions import InvalidMessage, RunRevoked
from .message import row_id
from .outcome import refused_row
from .recorder import write_rows

logger = logging.getLogger("taskkit.worker")


class GuardedRequest(Request):
    """Celery's request, whose reading and hand-over to the pool cannot take the worker down.

    Celery builds a subclass of this class per task with its own
    ``execute_using_pool``; the guard wraps that method on each request.
    """

    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(message, *args, **kwargs)
            if not isinstance(self.args, list | tuple) or not isinstance(self.kwargs, dict):
                raise ValueError(  # Celery would fail "outside body", and record nothing
                    f"its arguments are {type(self.args).__name__} and "
                    f"{type(self.kwargs).__name__}, not a list and an object"
                )
            if not isinstance(self.id, str):  # Celery looks it up among the revoked runs
                raise ValueError(f"its id {self.id!r:.100} is no string")
            if not _time_limits(self.time_limits):
                raise ValueError(f"its time limits {self.time_limits!r:.100} are not seconds")
            if self.eta is not None and not _a_time_here(self.eta):
                raise ValueError(f"its eta {self.eta} is no time this worker can wait for")
        except Exception as exc:  # a body that is no Celery task call
            headers = getattr(message, "headers", None) or {}
            record_refused(
                headers.get("id"),
                headers.get("task"),
                getattr(message, "delivery_info", None),
                kwargs.get("hostname"),
                f"The message is not a Celery task call ({type(exc).__name__}: {exc}); body: "
                f"{str(getattr(message, 'body', ''))[:300]!r}. It was not run.",
            )
            # Celery's own path for an invalid message: logged and rejected, not restored
            raise InvalidTaskError(str(exc)) from exc
        hand_over = self.execute_using_pool

        def guarded(pool: Any, **options: Any) -> Any:
            try:
                return hand_over(pool, **options)
            except TaskRevokedError:
                raise
            except Exception as exc:
                self.refused(exc)
                # Celery's own path for a request that will not run: it frees the pool slot
                raise TaskRevokedError(self.id) from exc

        self.execute_using_pool = guarded  # type: ignore[method-assign]

    def on_failure(self, exc_info: Any, *args: Any, **kwargs: Any) -> None:
        """Celery's, which itself fails on a body whose embed or keyword arguments are no
        mapping (``[1, 2, 3]``): the run is then recorded here, not lost in a log line.

        A run recorded cancelled is told to monitors as revoked (``task-revoked``), as
        Celery tells its own revokes; Celery's ``on_failure`` acknowledges its message.
        """
        exc = getattr(exc_info, "exception", None)
        if isinstance(getattr(exc, "exc", exc), RunRevoked):  # or wrapped, from a child
            self.send_event("task-revoked", terminated=False, signum=None, expired=False)
        try:
            super().on_failure(exc_info, *args, **kwargs)
        except Exception as exc:
            self.acknowledge()
            record_refused(
                self.id,
                self.name,
                self.delivery_info,
                self.hostname,
                f"The message is not a Celery task call ({type(exc).__name__}: {exc}). "
                "It was not run.",
            )

    def refused(self, exc: Exception) -> None:
        """Record the run as failed and acknowledge its message; never raise."""
        record_refused(
            self.id,
            self.name,
            self.delivery_info,
            self.hostname,
            f"The worker could not hand the message to a pool process ({type(exc).__name__}: "
            f"{str(exc)[:200]}); it was not run.",
        )
        self.acknowledge()
        task_ready(self)


def _time_limits(limits: Any) -> bool:
    """Whether ``limits`` are a request's time limits: two seconds, each ``None`` or a finite
    number not below zero (Celery's ``timelimit`` header, ``[hard, soft]``)."""
    return (
        isinstance(limits, list | tuple)
        and len(limits) == 2
        and all(
            limit is None or (type(limit) in (int, float) and math.isfinite(limit) and limit >= 0)
            for limit in limits
        )
    )


def _a_time_here(eta: datetime) -> bool:
    """Whether Celery's strategy can turn ``eta`` into a timestamp (it rejects the message
    otherwise, and a failure in the run table's result backend stores nothing: lost)."""
    try:
        to_timestamp(timezone.to_system(eta))
    except (OverflowError, ValueError):
        return False
    return True


def record_refused(
    run_id: Any,
    name: Any,
    delivery: Any,
    worker: Any,
    reason: str,
    *,
    error: Exception | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """Record a message the worker refused as a failed run; log instead if that fails.

    A run id that is no UUID gets one made of its text, as the task's own path gives
    it; a message with no run id at all gets a new one, so it is still on the record.
    """
    error = error or InvalidMessage(reason)
    logger.error("%s %s: %s", name, run_id, error)
    try:  # a payload the database refuses is left out, not the run
        queue = str((delivery or {}).get("routing_key") or "")
        row = refused_row(str(name or "?"), queue, payload, str(worker or ""), error)
        key = row_id(str(run_id)) if run_id not in (None, "") else str(uuid.uuid4())
        write_rows({key: row})
    except Exception:  # the database away
        logger.exception("%s %s: could not record the refused message", name, run_id)
