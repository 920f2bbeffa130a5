"""A scheduler with older code sends the delayed runs of a task it does not know; a worker decides."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from django.utils import timezone

import taskkit
from taskkit.bridge.carrier import CARRIER, celery_name
from taskkit.bridge.send.messages import Prepared
from taskkit.bridge.work.run import run_message
from taskkit.models import RunStatus, TaskRun
from taskkit.scheduling import promote

pytestmark = pytest.mark.django_db(transaction=True)  # the worker closes old connections


def due_row(name: str) -> TaskRun:
    return TaskRun.objects.create(
        id=uuid.uuid4(),
        name=name,
        queue="reports",
        payload={"month": "May"},
        status=RunStatus.SCHEDULED,
        scheduled_for=timezone.now() - timedelta(seconds=1),
    )


def test_a_delayed_run_of_a_task_added_after_the_scheduler_started_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[Prepared] = []
    monkeypatch.setattr(promote, "publish", sent.extend)
    row = due_row("reports:added-later")
    assert promote.promote_due() == 1
    (run,) = sent
    assert (run.run_id, run.task.name, run.queue, run.payload) == (
        str(row.pk),
        "reports:added-later",
        "reports",
        {"month": "May"},
    )
    assert celery_name(run.task) == CARRIER  # its name travels in the context
    row.refresh_from_db()
    assert row.status == RunStatus.QUEUED  # not failed by a process with older code

    # the worker, whose code has the task, runs it
    newer = taskkit.get_task("echo:payload").using(name="reports:added-later")
    monkeypatch.setitem(taskkit.registry.current().tasks, "reports:added-later", newer)
    request = SimpleNamespace(id=run.run_id, hostname="w1@host", delivery_info={})
    run_message(cast(Any, SimpleNamespace(name=CARRIER, request=request)), **run.kwargs())
    row.refresh_from_db()
    assert (row.status, row.result) == (RunStatus.SUCCEEDED, {"month": "May"})


def test_a_worker_that_does_not_know_it_either_fails_it_visibly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(promote, "publish", sent.extend)
    row = due_row("reports:gone")
    promote.promote_due()
    (run,) = sent
    request = SimpleNamespace(id=run.run_id, hostname="w1@host", delivery_info={})
    with pytest.raises(taskkit.TaskNotFound):
        run_message(cast(Any, SimpleNamespace(name=CARRIER, request=request)), **run.kwargs())
    row.refresh_from_db()
    assert row.status == RunStatus.FAILED and "Unknown task 'reports:gone'" in row.error
