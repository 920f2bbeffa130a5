"""Cancellations: runs a worker skips because they were deleted while queued.

A broker that cannot remove one message (AMQP) gets a cancellation instead: a
row that names a run, or a rule (queue, task, payload, queued before the
deletion, how many). Every worker checks them before every run. They are read
once per :data:`REFRESH` per process, not per run, so a worker pays nothing
while there are none; :func:`cancel` returns only after every worker has read
its rule, so a run that starts after that is skipped.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F
from django.utils import timezone

from ...definition import canonical_json
from ...models import Cancellation

#: How often a worker process reads the cancellations again.
REFRESH = 1.0

#: How long a cancellation is kept.
KEEP = timedelta(days=7)


def payload_key(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(dict(payload)).encode()).hexdigest()


def cancel(
    *,
    run_id: str | uuid.UUID | None = None,
    queue: str = "",
    name: str = "",
    payload: Mapping[str, Any] | None = None,
    count: int | None = None,
    wait: bool = True,
) -> Cancellation:
    """Record a cancellation; with ``wait``, return once every worker has read it."""
    now = timezone.now()
    row = Cancellation.objects.create(
        run_id=run_id,
        queue=queue,
        name=name,
        payload_key="" if payload is None else payload_key(payload),
        before=now,
        remaining=count or None,
        created_at=now,
        expires_at=now + KEEP,
    )
    if wait:
        _wait_for_workers()
    return row


def _wait_for_workers() -> None:
    """Until every worker process has read the table again."""
    time.sleep(REFRESH + 0.1)


class _Snapshot:
    """This process's copy of the live cancellations, read again every ``REFRESH``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.read_at = -REFRESH
        self.rows: list[Cancellation] = []

    def current(self) -> list[Cancellation]:
        with self.lock:
            if time.monotonic() - self.read_at >= REFRESH:
                self.rows = list(Cancellation.objects.filter(expires_at__gt=timezone.now()))
                self.read_at = time.monotonic()
            return self.rows


_snapshot = _Snapshot()


def _applies(
    rule: Cancellation,
    run_id: str,
    name: str,
    queue: str,
    payload: Mapping[str, Any],
    enqueued_at: Any,
) -> bool:
    if rule.run_id is not None:
        return str(rule.run_id) == run_id
    return (
        (not rule.queue or rule.queue == queue)
        and (not rule.name or rule.name == name)
        and (not rule.payload_key or rule.payload_key == payload_key(payload))
        and (
            not isinstance(enqueued_at, str)  # no time (a message from elsewhere): old
            or datetime.fromisoformat(enqueued_at) < rule.before
        )
    )


def cancelled(
    run_id: str,
    name: str,
    queue: str,
    payload: Mapping[str, Any],
    enqueued_at: Any,
) -> Cancellation | None:
    """The cancellation that says to skip this run, if any (a counted one is used up).

    ``enqueued_at`` is the message's ISO 8601 time as sent; it is read only when a
    rule could apply, so a worker with no cancellations pays for none of this.
    """
    for rule in _snapshot.current():
        if not _applies(rule, run_id, name, queue, payload, enqueued_at):
            continue
        if rule.remaining is None:
            return rule
        taken = Cancellation.objects.filter(pk=rule.pk, remaining__gt=0).update(
            remaining=F("remaining") - 1
        )
        if taken:
            return rule
    return None
