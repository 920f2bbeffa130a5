"""A queued Celery message of a taskkit task, read back without consuming it."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..bridge.carrier import task_name
from ..quarantine import PROBLEM_HEADER, item_id, problem, read
from ..times import iso


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One message waiting in a queue: which run of which task, with which payload."""

    run_id: str
    name: str
    queue: str
    payload: dict[str, Any]
    #: When it was queued (``None`` for a message taskkit did not send).
    enqueued_at: datetime | None = None
    attempt: int = 1
    source: str = ""
    #: Its place in the queue, 0 being the next one a worker takes.
    position: int = 0
    #: Why a worker cannot take it (not JSON, no kombu envelope, no Celery task);
    #: empty for a message it can. Such an item's ``run_id`` is made of its bytes.
    problem: str = ""
    #: The envelope exactly as the broker holds it, and where (a Redis list, a file):
    #: what removing that very message takes.
    raw: bytes = field(default=b"", repr=False, compare=False)
    location: str = field(default="", repr=False, compare=False)

    def as_json(self) -> dict[str, Any]:
        """Plain JSON values, as ``taskqueue list --json`` prints them."""
        return {
            "run_id": self.run_id,
            "name": self.name,
            "queue": self.queue,
            "payload": self.payload,
            "enqueued_at": iso(self.enqueued_at),
            "attempt": self.attempt,
            "source": self.source,
            "position": self.position,
            **(
                {"problem": self.problem, "raw": self.raw.decode(errors="replace")}
                if self.problem
                else {}
            ),
        }


def _body(envelope: dict[str, Any]) -> Any:
    body = envelope.get("body", "")
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    return json.loads(body) if isinstance(body, str | bytes) else body


def decode(raw: bytes, queue: str, position: int = 0, location: str = "") -> QueuedMessage:
    """The message in kombu's JSON envelope ``raw``.

    Messages of plain Celery tasks decode too (their keyword arguments stand for
    the payload), so an operator sees everything a queue holds; an item that
    is no Celery task message is shown as :func:`malformed`. Items are read as a
    worker reads them (:func:`~taskkit.quarantine.read`): one a worker would move
    to the quarantine is listed with its problem before it is moved.
    """
    envelope = read(raw)
    if isinstance(envelope, str):
        return malformed(raw, queue, position, location, envelope)
    headers = envelope.get("headers")
    noted = str(headers.get(PROBLEM_HEADER, "")) if isinstance(headers, dict) else ""
    message = (
        None if noted else from_envelope(envelope, queue, position, raw=raw, location=location)
    )
    return message or malformed(raw, queue, position, location, noted)


def malformed(
    raw: bytes, queue: str, position: int = 0, location: str = "", noted: str = ""
) -> QueuedMessage:
    """An item no worker can run, under an id made of its bytes, saying what is wrong
    (``noted``: what the worker that quarantined it said)."""
    return QueuedMessage(
        run_id=item_id(raw),
        name="",
        queue=queue,
        payload={},
        position=position,
        problem=noted
        or problem(raw)
        or "not a Celery task message (no task name or id in its headers)",
        raw=raw,
        location=location,
    )


def from_envelope(
    envelope: Any, queue: str, position: int = 0, *, raw: bytes = b"", location: str = ""
) -> QueuedMessage | None:
    """The message in kombu's decoded envelope; ``None`` if it is not a Celery task."""
    try:
        headers = envelope.get("headers") or {}
        args, kwargs, _ = _body(envelope)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if not isinstance(headers, dict) or "task" not in headers or "id" not in headers:
        return None
    try:  # a message some other producer wrote: its fields may be anything
        context = kwargs.get("context") if isinstance(kwargs.get("context"), dict) else None
        payload = kwargs.get("payload") if context is not None else kwargs
        enqueued = context.get("enqueued_at") if context else None
        return QueuedMessage(
            run_id=str(context.get("run_id") or headers["id"]) if context else str(headers["id"]),
            name=task_name(str(headers["task"]), context or {}),
            queue=queue,
            payload=payload if isinstance(payload, dict) else {"args": args},
            enqueued_at=datetime.fromisoformat(enqueued) if isinstance(enqueued, str) else None,
            attempt=int(context.get("attempt", 1)) if context else 1,
            source=str(context.get("source", "")) if context else "",
            position=position,
            raw=raw,
            location=location,
        )
    except (ValueError, TypeError, AttributeError, OverflowError):  # OverflowError: int(Infinity)
        return None
