"""The worker's main process never dies on a message it cannot hand to a pool process.

A prefork worker pickles each message's arguments to send them to a pool
process. A payload nested thousands deep makes pickling raise
``RecursionError`` in the main process, which Celery treats as unrecoverable:
the worker exits, the message goes back to the broker, and every restart dies
on it again. :class:`GuardedRequest`, the Celery request class of taskkit's
tasks, catches whatever the hand-over raises: the run is recorded as failed
(with the reason, so an operator sees it and can remove it), its message is
acknowledged, and the worker takes the next one.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import TaskRevokedError
from celery.worker.request import Request
from celery.worker.state import task_ready
from django.utils import timezone

from ...exceptions import InvalidMessage
from ...models import RunStatus
from .recorder import upsert

logger = logging.getLogger("taskkit.worker")


class GuardedRequest(Request):
    """Celery's request, whose hand-over to the pool cannot take the worker down.

    Celery builds a subclass of this class per task with its own
    ``execute_using_pool``; the guard wraps that method on each request.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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

    def refused(self, exc: Exception) -> None:
        """Record the run as failed and acknowledge its message; never raise."""
        error = InvalidMessage(
            f"The worker could not hand the message to a pool process ({type(exc).__name__}: "
            f"{str(exc)[:200]}); it was not run."
        )
        logger.error("%s %s: %s", self.name, self.id, error)
        try:
            upsert(
                str(self.id),
                {
                    "name": str(self.name),
                    "queue": str((self.delivery_info or {}).get("routing_key") or ""),
                    "payload": {},
                    "worker": str(self.hostname or ""),
                    "status": RunStatus.FAILED,
                    "error": f"{type(error).__name__}: {error}",
                    "finished_at": timezone.now(),
                },
            )
        except Exception:
            logger.exception("%s %s: could not record the refused run", self.name, self.id)
        self.acknowledge()
        task_ready(self)
