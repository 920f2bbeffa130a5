"""What a taskkit message carries: the payload and the run's context, as plain JSON.

The Celery task id is the run id, so Celery's tools and taskkit's tables agree.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from ...conf import settings
from ...definition import Source, Task, normalize_payload
from ...definition.names import validate_queue_name
from ...exceptions import TaskNotImplemented
from ..carrier import is_carried


@dataclass(frozen=True, slots=True)
class Prepared:
    """One run, checked and ready to be stored or sent."""

    task: Task
    run_id: str
    queue: str
    payload: dict[str, Any]
    canonical: str
    attempt: int = 1
    scheduled_time: datetime | None = None
    source: Source = Source.WORKER
    #: Whether a row exists for the run already (delayed, retried, outbox): the worker
    #: then updates it even for ``track="failures"``.
    stored: bool = False
    #: When the run entered its queue; ``taskqueue list`` shows it.
    enqueued_at: datetime = field(default_factory=timezone.now)
    #: The Celery message priority (``None``: the broker's default), as the broker orders it.
    priority: int | None = None
    #: A stored step of a Celery canvas: its previous result (``args``) and the
    #: ``apply_async`` options of what follows it, sent again with it.
    canvas: Mapping[str, Any] | None = None

    def kwargs(self) -> dict[str, Any]:
        """The Celery message's keyword arguments."""
        context: dict[str, Any] = {
            "run_id": self.run_id,
            "queue": self.queue,
            "source": str(self.source),
            "attempt": self.attempt,
            "enqueued_at": self.enqueued_at.isoformat(),
        }
        if self.scheduled_time is not None:
            context["scheduled_time"] = self.scheduled_time.isoformat()
        if self.stored:
            context["stored"] = True
        if is_carried(self.task):
            context["task"] = self.task.name
        return {"payload": self.payload, "context": context}


def prepare(
    task: Task,
    payload: Mapping[str, Any] | None,
    queue: str | None = None,
    *,
    run_id: str | None = None,
    **fields: Any,
) -> Prepared:
    """Check ``payload`` against the task and settings; raise before anything is stored or sent."""
    if task.handler is None:
        raise TaskNotImplemented(task.name, task.missing_reason or "no handler")
    if queue is not None:
        validate_queue_name(queue)
    plain, canonical = normalize_payload(
        payload, schema=task.meta.schema, max_bytes=settings.MAX_PAYLOAD_BYTES
    )
    return Prepared(
        task=task,
        run_id=run_id or str(uuid.uuid4()),
        queue=queue or task.meta.queue,
        payload=plain,
        canonical=canonical,
        **fields,
    )
