"""Recurrent control: enqueue_recurrent, stop_recurrent, their taskqueue commands; ticks and locks."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

import taskkit
from taskkit.bridge.send.enqueue import enqueue_tick
from taskkit.bridge.send.messages import Prepared
from taskkit.bridge.work.run import run_message
from taskkit.exceptions import RunRevoked
from taskkit.models import RunStatus, TaskLock, TaskRun
from taskkit.scheduling.periodic import PREFIX
from tests.conftest import RevokedIn

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = "tests.apps.nested.handlers.hello"
SETTINGS = {
    "TASKS": {
        "every:minute": {"handler": HELLO, "frequency": 60},
        "locked:tick": {"handler": HELLO, "frequency": 60, "locks": "queue_lock"},
        "not:periodic": {"handler": HELLO},
    },
    "SCHEDULE": {"*/5 * * * *": "echo:payload"},
}


@pytest.fixture
def sent(reload_registry: Any, monkeypatch: pytest.MonkeyPatch) -> list[Prepared]:
    """The runs handed to the broker (nothing is really sent)."""
    reload_registry("tests.apps.nested", TASKKIT=SETTINGS)
    taskkit.sync_periodic()
    runs: list[Prepared] = []
    monkeypatch.setattr(sys.modules["taskkit.bridge.send.enqueue"], "publish", runs.extend)
    return runs


def row(name: str, status: RunStatus, **fields: Any) -> TaskRun:
    return TaskRun.objects.create(id=uuid.uuid4(), name=name, status=status, **fields)


def test_enqueue_recurrent_runs_a_periodic_task_now(sent: list[Prepared]) -> None:
    before = timezone.now()
    handle = taskkit.enqueue_recurrent("every:minute")
    [run] = sent
    assert run.run_id == handle.id and run.task.name == "every:minute"
    tick = datetime.fromisoformat(run.payload["scheduledTime"])
    assert before <= tick <= timezone.now()
    assert run.kwargs()["context"]["scheduled_time"] == run.payload["scheduledTime"]
    # a task scheduled by the SCHEDULE setting is periodic too
    assert taskkit.enqueue_recurrent("echo:payload").name == "echo:payload"


def test_enqueue_recurrent_respects_the_queue_lock(sent: list[Prepared]) -> None:
    first = taskkit.enqueue_recurrent("locked:tick")
    second = taskkit.enqueue_recurrent("locked:tick")  # another scheduledTime, same lock
    assert not first.deduplicated and second.deduplicated and second.id == first.id
    assert len(sent) == 1


def test_recurrent_control_refuses_other_tasks(sent: list[Prepared]) -> None:
    for control in (taskkit.enqueue_recurrent, taskkit.stop_recurrent):
        with pytest.raises(taskkit.TaskNotPeriodic, match="'not:periodic' is not periodic"):
            control("not:periodic")
        with pytest.raises(taskkit.TaskNotFound, match="every:minute"):
            control("every:minutes")
    assert sent == []


def test_stop_recurrent_disables_the_schedule_and_removes_waiting_runs(
    sent: list[Prepared],
) -> None:
    later = timezone.now() + timedelta(hours=1)
    row("every:minute", RunStatus.SCHEDULED, scheduled_for=later)
    row("every:minute", RunStatus.SCHEDULED, scheduled_for=later)
    queued = row("every:minute", RunStatus.QUEUED)
    done = row("every:minute", RunStatus.SUCCEEDED)
    other = row("locked:tick", RunStatus.SCHEDULED, scheduled_for=later)

    assert taskkit.stop_recurrent("every:minute") == 3
    schedule = PeriodicTask.objects.get(name=f"{PREFIX}every:minute")
    assert not schedule.enabled
    assert PeriodicTask.objects.get(name=f"{PREFIX}locked:tick").enabled
    statuses = dict(TaskRun.objects.values_list("id", "status"))
    assert statuses == {
        queued.pk: RunStatus.CANCELLED,
        done.pk: RunStatus.SUCCEEDED,
        other.pk: RunStatus.SCHEDULED,
    }
    taskkit.sync_periodic()  # a stop survives the sync, like an operator's switch
    assert not PeriodicTask.objects.get(name=f"{PREFIX}every:minute").enabled


def test_a_worker_skips_a_run_cancelled_while_queued(sent: list[Prepared]) -> None:
    handle = taskkit.get_task("locked:tick").enqueue({"n": 1})
    TaskRun.objects.create(id=handle.id, name="locked:tick", status=RunStatus.CANCELLED)
    assert TaskLock.objects.count() == 1
    ctask: Any = SimpleNamespace(
        name="locked:tick", request=SimpleNamespace(id=handle.id, hostname="w1@h", delivery_info={})
    )
    ctask.backend = RevokedIn()
    with pytest.raises(RunRevoked):  # Celery hears of it as revoked
        run_message(ctask, {"n": 1}, {**sent[0].kwargs()["context"], "stored": True})
    assert TaskRun.objects.get(pk=handle.id).status == RunStatus.CANCELLED  # it did not run
    assert ctask.backend.revoked == [(handle.id, "cancelled")]
    assert TaskLock.objects.count() == 0  # and its payload may be queued again


def test_a_tick_whose_previous_run_is_still_queued_is_skipped(sent: list[Prepared]) -> None:
    task = taskkit.get_task("locked:tick")
    tick = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    first = enqueue_tick(task, "taskkit: locked:tick", tick)
    assert first is not None
    assert enqueue_tick(task, "taskkit: locked:tick", tick + timedelta(minutes=1)) is None
    skipped = TaskRun.objects.exclude(pk=first.id).get()
    assert skipped.status == RunStatus.CANCELLED
    assert skipped.error == f"Skipped: run {first.id} of this task is still queued (queue_lock)."
    assert len(sent) == 1
    TaskLock.objects.all().delete()  # the first run started
    assert enqueue_tick(task, "taskkit: locked:tick", tick + timedelta(minutes=2)) is not None


def command(*args: str) -> Any:
    out = StringIO()
    call_command("taskqueue", *args, stdout=out)
    return out.getvalue()


def test_taskqueue_commands(sent: list[Prepared]) -> None:
    PeriodicTask.objects.filter(name__startswith=PREFIX).delete()
    assert json.loads(command("sync-periodic", "--json")) == {
        "created": 3,
        "updated": 0,
        "disabled": 0,
    }
    assert command("sync-periodic").strip() == (
        "Periodic tasks synced: 0 created, 0 updated, 0 disabled."
    )
    queued = json.loads(command("enqueue-recurrent", "every:minute", "--json"))
    assert queued["id"] == sent[0].run_id and queued["deduplicated"] is False
    row("every:minute", RunStatus.SCHEDULED, scheduled_for=timezone.now())
    assert command("stop-recurrent", "every:minute").strip() == (
        "every:minute stopped; 1 waiting run(s) removed."
    )
    with pytest.raises(CommandError, match="is not periodic") as caught:
        command("stop-recurrent", "not:periodic")
    assert caught.value.returncode == 2
