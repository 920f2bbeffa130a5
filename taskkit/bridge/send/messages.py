"""What a taskkit message carries: the payload and the run's context, as plain JSON.

The Celery task id is the run id, so Celery's tools and taskkit's tables agree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from ...conf import settings
from ...definition import Source, Task
from ...definition.names import validate_queue_name
from ...definition.payload import checked_payload
from ...exceptions import TaskNotImplemented
from ..carrier import is_carried


@dataclass(frozen=True, slots=True)
class Prepared:
    """One run, checked and ready to be stored or sent."""

    task: Task
    run_id: str
    queue: str
    #: The payload's JSON text as kombu writes it (the Redis fast path's body holds it).
    spelled: str
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

    @property
    def payload(self) -> dict[str, Any]:
        """The payload, plain JSON (decoded when asked: the fast path never asks)."""
        payload: dict[str, Any] = json.loads(self.spelled)
        return payload

    def kwargs(self) -> dict[str, Any]:
        """The Celery message's keyword arguments."""
        return {"payload": self.payload, "context": self.context()}

    def context(self) -> dict[str, Any]:
        """The run's context, as the message carries it."""
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
        return context


#: The RFC 4122 variant's first hex digit of a UUID, for any random one.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_ids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs, as text, from one read of the OS's randomness.

    What ``str(uuid.uuid4())`` gives, without building a ``UUID`` for each.
    """
    raw = os.urandom(16 * count).hex()
    return [
        f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"
        for h in (raw[start : start + 32] for start in range(0, 32 * count, 32))
    ]


def prepare_many(
    task: Task,
    payloads: Iterable[Mapping[str, Any] | None],
    queue: str,
    *,
    run_ids: Sequence[str] | None = None,
    **fields: Any,
) -> list[Prepared]:
    """:func:`prepare` for runs that share a task, queue and fields: what is the same is
    checked once, and every run is queued at the same time. ``run_ids`` (one a payload)
    name the runs; new ones are drawn without them."""
    if task.handler is None:
        raise TaskNotImplemented(task.name, task.missing_reason or "no handler")
    validate_queue_name(queue)
    schema, max_bytes = task.meta.schema, settings.MAX_PAYLOAD_BYTES
    checked = [checked_payload(p, schema=schema, max_bytes=max_bytes) for p in payloads]
    fields.setdefault("enqueued_at", timezone.now())
    return [
        Prepared(
            task=task,
            run_id=run_id,
            queue=queue,
            spelled=spelled,
            **fields,
        )
        for spelled, run_id in zip(checked, run_ids or new_ids(len(checked)), strict=True)
    ]


def prepare(
    task: Task,
    payload: Mapping[str, Any] | None,
    queue: str | None = None,
    *,
    run_id: str | None = None,
    **fields: Any,
) -> Prepared:
    """Check ``payload`` against the task and settings; raise before anything is stored or sent.

    Without ``queue``, the task's own (checked when the task was defined).
    """
    ids = [run_id] if run_id else None
    target = task.meta.queue if queue is None else queue  # "" is refused, as a queue name
    return prepare_many(task, [payload], target, run_ids=ids, **fields)[0]
