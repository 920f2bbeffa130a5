"""A delivery that does not run leaves Celery's state of the run as it was, or revoked.

Through Celery's own tracer, with a result backend of the project's own (Celery's
in-memory cache): a success (``None``) stored for such a delivery would hide the
result of the delivery that ran the run, and tell monitors it succeeded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from billiard.einfo import ExceptionInfo
from celery import Celery, states
from celery.app.trace import build_tracer
from celery.exceptions import Ignore
from celery.worker.request import Request

from taskkit.bridge.work import cancellations
from taskkit.bridge.work.cancellations import cancel
from taskkit.bridge.work.request import GuardedRequest
from taskkit.exceptions import RunRevoked
from taskkit.models import RunStatus, TaskRun

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "track:outbox"  # track="all": its rows tell a second delivery of an attempt


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("unrun-deliveries", backend="cache+memory://", set_as_current=False)
    yield app
    app.close()


def deliver(app: Celery, run_id: str, payload: dict[str, Any]) -> str:
    """Trace one delivery of the run's first attempt as a worker does; return Celery's state."""
    tracer = build_tracer(NAME, app.tasks[NAME], app=app, eager=False, propagate=False)
    kwargs = {"payload": payload, "context": {"run_id": run_id, "stored": True, "attempt": 1}}
    request = {"id": run_id, "hostname": "w1@host", "delivery_info": {}}
    info = tracer(run_id, [], kwargs, request).info  # None: a success
    return str(info.state) if info is not None else states.SUCCESS


def test_a_second_delivery_of_a_run_leaves_the_first_ones_result(app: Celery) -> None:
    run_id = str(TaskRun.objects.create(name=NAME, status=RunStatus.QUEUED).pk)
    assert deliver(app, run_id, {"a": 1}) == states.SUCCESS
    assert deliver(app, run_id, {"a": 2}) == states.IGNORED
    result = app.AsyncResult(run_id)
    assert (result.state, result.result) == (states.SUCCESS, {"a": 1})


def test_a_run_deleted_while_queued_is_revoked_to_celery(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cancellations, "REFRESH", 0.0)  # the worker reads the deletion at once
    run_id = str(uuid.uuid4())
    cancel(run_id=run_id, wait=False)
    assert deliver(app, run_id, {}) == states.IGNORED
    assert str(app.AsyncResult(run_id).state) == states.REVOKED
    assert TaskRun.objects.get(pk=run_id).status == RunStatus.CANCELLED


@pytest.mark.parametrize(
    ("exc", "events"), [(RunRevoked("cancelled"), ["task-revoked"]), (Ignore(), [])]
)
def test_the_main_process_tells_monitors_a_deleted_run_was_revoked(
    exc: Exception, events: list[str]
) -> None:
    sent: list[str] = []
    request = GuardedRequest.__new__(GuardedRequest)  # only what on_failure reads
    request.send_event = lambda kind, **fields: sent.append(kind)  # type: ignore[method-assign]
    try:
        raise exc
    except Exception:
        info = ExceptionInfo(internal=True)
    with mock.patch.object(Request, "on_failure") as celerys:
        request.on_failure(info)
    assert sent == events
    celerys.assert_called_once()  # which acknowledges the message
