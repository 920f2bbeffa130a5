"""Django's own task examples against a real worker, through taskkit's ``CeleryBackend``."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

import taskkit
from taskkit import queues
from taskkit.backends.compat import TaskResultStatus
from taskkit.models import RunStatus, TaskRun
from tests.apps.single import jobs

from .conftest import Broker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]
TIMEOUT = 30


def finished(result: Any) -> Any:
    """``result`` refreshed until its run has finished."""
    deadline = time.monotonic() + TIMEOUT
    while not result.is_finished:
        assert time.monotonic() < deadline, f"{result.id} still {result.status}"
        time.sleep(0.05)
        result.refresh()
    return result


def test_enqueue_and_get_result(broker: Broker) -> None:
    result = finished(jobs.add.enqueue(2, 3))
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.started_at is not None and result.finished_at >= result.started_at
    assert len(result.worker_ids) == 1 and result.attempts == 1
    assert jobs.add.get_result(result.id).return_value == 5


def test_a_failure_keeps_its_exception_and_traceback(broker: Broker) -> None:
    result = finished(jobs.fail.enqueue("boom"))
    assert result.status == TaskResultStatus.FAILED
    (error,) = result.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "ValueError: boom" in error.traceback
    with pytest.raises(ValueError, match=r"(?i)failed"):
        _ = result.return_value
    # retried like any taskkit run: same id, same arguments, each attempt kept
    assert [h.id for h in taskkit.retry_failed(result.id)] == [result.id]
    deadline = time.monotonic() + TIMEOUT
    while len(jobs.fail.get_result(result.id).errors) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    again = finished(jobs.fail.get_result(result.id))
    assert [e.exception_class_path for e in again.errors] == ["builtins.ValueError"] * 2


def test_a_deferred_run_waits_for_its_time(broker: Broker) -> None:
    due = timezone.now() + timedelta(seconds=1.5)
    result = jobs.add.using(run_after=due).enqueue(1, 1)
    assert jobs.add.get_result(result.id).status == TaskResultStatus.READY
    result = finished(result)
    assert result.return_value == 2
    assert result.started_at >= due


def test_context_and_async_functions(broker: Broker) -> None:
    where = finished(jobs.where.enqueue(label="here"))
    assert where.return_value == {"id": where.id, "attempt": 1, "label": "here"}
    assert finished(jobs.double.enqueue(21)).return_value == 42

    async def both() -> tuple[Any, Any]:
        result = await jobs.add.aenqueue(4, 4)
        return result, await jobs.add.aget_result(result.id)

    queued, fetched = async_to_sync(both)()
    assert fetched.id == queued.id
    assert finished(queued).return_value == 8


def test_queued_runs_show_under_their_path_and_can_be_deleted(broker: Broker) -> None:
    name = "tests.apps.single.jobs.add"
    results = [jobs.add.using(queue_name="django-parked").enqueue(i, i) for i in range(3)]
    try:
        if queues.listable():
            listed = queues.list("django-parked")
            assert [(m.name, m.run_id) for m in listed] == [(name, r.id) for r in results]
            assert listed[0].payload == {"args": [0, 0], "kwargs": {}}
            assert queues.delete("django-parked", name, {"args": [1, 1], "kwargs": {}}) == 1
            assert [m.run_id for m in queues.list("django-parked")] == [
                results[0].id,
                results[2].id,
            ]
            assert [m.name for m in queues.find(name)["queued"]] == [name, name]
    finally:
        queues.purge("django-parked")
    assert TaskRun.objects.filter(name=name, status=RunStatus.QUEUED).count() == 3
