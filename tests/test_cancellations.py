"""Cancellations: the runs a worker skips because they were deleted while queued."""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone

from taskkit.bridge.work import cancellations
from taskkit.bridge.work.cancellations import cancel
from taskkit.bridge.work.run import run_message
from taskkit.exceptions import RunRevoked
from taskkit.models import Cancellation, TaskRun

from .conftest import RevokedIn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cancellations, "REFRESH", 0.0)  # read the table on every check


def deliver(payload: dict[str, Any], queue: str = "q", **context: Any) -> str:
    """Run a message of echo:payload in process, as a worker would; return its run id."""
    run_id = str(uuid.uuid4())
    ctask: Any = SimpleNamespace(
        name="echo:payload",
        request=SimpleNamespace(id=run_id, hostname="w1@h", delivery_info={}),
        backend=RevokedIn(),
    )
    enqueued = {"enqueued_at": timezone.now().isoformat()}
    with contextlib.suppress(RunRevoked):  # how a skipped delivery ends
        run_message(ctask, payload, {"run_id": run_id, "queue": queue, **enqueued, **context})
    return run_id


def status(run_id: str) -> str:
    return str(TaskRun.objects.get(pk=run_id).status)


def test_a_rule_skips_matching_runs_queued_before_it() -> None:
    before = deliver({"a": 1})  # ran: nothing is cancelled yet
    cancel(queue="q", name="echo:payload", payload={"a": 1}, wait=False)
    skipped = deliver({"a": 1}, enqueued_at=(timezone.now() - timedelta(seconds=5)).isoformat())
    other_payload = deliver(
        {"a": 2}, enqueued_at=(timezone.now() - timedelta(seconds=5)).isoformat()
    )
    other_queue = deliver(
        {"a": 1}, queue="r", enqueued_at=(timezone.now() - timedelta(seconds=5)).isoformat()
    )
    queued_later = deliver({"a": 1})  # enqueued after the deletion
    assert status(before) == status(other_payload) == status(other_queue) == "succeeded"
    assert status(queued_later) == "succeeded"
    assert status(skipped) == "cancelled"
    assert TaskRun.objects.get(pk=skipped).error.startswith("Deleted while queued: echo:payload")


def test_a_counted_rule_is_used_up_and_messages_without_a_time_count_as_old() -> None:
    cancel(name="echo:payload", count=2, wait=False)
    outcomes = [status(deliver({"i": i}, enqueued_at=None)) for i in range(4)]
    assert outcomes == ["cancelled", "cancelled", "succeeded", "succeeded"]
    assert Cancellation.objects.get().remaining == 0


def test_a_run_cancelled_by_id_and_expired_rules() -> None:
    run_id = str(uuid.uuid4())
    cancel(run_id=run_id, wait=False)
    ctask: Any = SimpleNamespace(
        name="echo:payload",
        request=SimpleNamespace(id=run_id, hostname="w1@h", delivery_info={}),
        backend=RevokedIn(),
    )
    with pytest.raises(RunRevoked):
        run_message(ctask, {}, {"run_id": run_id})
    assert status(run_id) == "cancelled"
    assert ctask.backend.revoked == [(run_id, "cancelled")]
    old = cancel(name="echo:payload", wait=False)
    Cancellation.objects.filter(pk=old.pk).update(expires_at=timezone.now())
    Cancellation.objects.filter(run_id=run_id).delete()
    assert status(deliver({}, enqueued_at=None)) == "succeeded"  # an expired rule is gone


def test_cancel_waits_for_every_worker_to_read_it(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[int] = []
    monkeypatch.setattr(cancellations, "_wait_for_workers", lambda: waits.append(1))
    cancel(name="echo:payload")
    cancel(name="echo:payload", wait=False)
    assert waits == [1]
