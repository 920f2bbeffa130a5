"""Each step of a run, told as one ``taskkit.runs`` log line and one signal, on the real paths."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery import current_app
from celery.exceptions import Retry
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone
from pythonjsonlogger.json import JsonFormatter

import taskkit
from taskkit import events, queues, signals
from taskkit.bridge.work import cancellations, heartbeat, register
from taskkit.bridge.work.run import run_message
from taskkit.exceptions import RunRevoked
from taskkit.models import RunStatus, TaskRun, WorkerHeartbeat
from taskkit.scheduling import promote_due
from tests.conftest import RevokedIn
from tests.integration.conftest import current, make_app, transport_settings

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit runs at a real commit

SIGNALS: dict[str, Signal] = {name: getattr(signals, name) for name in signals.__all__}


@pytest.fixture
def told() -> Iterator[list[dict[str, Any]]]:
    """The keyword arguments of every run signal sent, with ``signal``: its name."""
    seen: list[dict[str, Any]] = []
    receivers = {}
    for name, signal in SIGNALS.items():

        def receive(sender: Any, signal: Signal, _name: str = name, **kwargs: Any) -> None:
            assert sender is None
            seen.append({"signal": _name, **kwargs})

        receivers[name] = receive
        signal.connect(receive)
    yield seen
    for name, signal in SIGNALS.items():
        signal.disconnect(receivers[name])


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The log, ``taskkit.runs`` at INFO."""
    with caplog.at_level(logging.INFO, logger="taskkit.runs"):
        yield caplog


def runs(lines: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in lines.records if record.name == "taskkit.runs"]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record's ``extra`` fields, without their prefix."""
    prefix = events.PREFIX
    return {k[len(prefix) :]: v for k, v in vars(record).items() if k.startswith(prefix)}


def steps(
    told: list[dict[str, Any]], lines: pytest.LogCaptureFixture
) -> list[tuple[str, str, dict[str, Any]]]:
    """(signal, level, fields) per step; the log line and the signal carry the same fields."""
    records = runs(lines)
    assert [fields(record) for record in records] == [
        {k: v for k, v in kwargs.items() if k != "signal"} for kwargs in told
    ]
    return [
        (kwargs["signal"], record.levelname, fields(record))
        for kwargs, record in zip(told, records, strict=True)
    ]


def ctask(name: str, run_id: str) -> Any:
    """The Celery task object ``run_message`` gets, for a message of ``name``."""
    request = SimpleNamespace(id=run_id, hostname="w1@host", delivery_info={})
    return SimpleNamespace(name=name, request=request, backend=RevokedIn())


def test_an_enqueue_is_told_once_the_broker_took_it_after_the_commit(
    told: list[dict[str, Any]], lines: pytest.LogCaptureFixture
) -> None:
    with transaction.atomic():
        handle = taskkit.enqueue("echo:payload", {"a": 1})
        assert told == []  # nothing is sent before the commit
    ((signal, level, got),) = steps(told, lines)
    assert (signal, level) == ("run_enqueued", "INFO")
    assert got == {
        "step": "enqueued",
        "run_id": handle.id,
        "task": "echo:payload",
        "queue": handle.queue,
        "attempt": 1,
        "duration": None,
        "worker": None,
        "error": None,
        "waited": None,
    }
    assert (
        runs(lines)[0].getMessage()
        == f"echo:payload {handle.id} enqueued (queue default, attempt 1)"
    )


def test_a_rolled_back_enqueue_tells_nothing(told: list[dict[str, Any]]) -> None:
    def enqueue_and_roll_back() -> None:
        with transaction.atomic():
            taskkit.enqueue("echo:payload")
            taskkit.enqueue_in("echo:payload", 60)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        enqueue_and_roll_back()
    assert told == []


def test_enqueue_many_tells_each_run(
    told: list[dict[str, Any]], lines: pytest.LogCaptureFixture
) -> None:
    handles = taskkit.enqueue_many("echo:payload", [{"i": i} for i in range(3)], queue="bulk")
    got = steps(told, lines)
    assert [(g[0], g[2]["run_id"], g[2]["queue"]) for g in got] == [
        ("run_enqueued", handle.id, "bulk") for handle in handles
    ]


def test_a_delayed_run_is_told_enqueued_then_promoted(
    told: list[dict[str, Any]], lines: pytest.LogCaptureFixture
) -> None:
    handle = taskkit.enqueue_at("echo:payload", timezone.now() - timedelta(seconds=1))
    assert promote_due() == 1
    got = steps(told, lines)
    assert [(g[0], g[2]["step"], g[2]["run_id"]) for g in got] == [
        ("run_enqueued", "enqueued", handle.id),
        ("run_promoted", "promoted", handle.id),
    ]


def test_a_run_is_told_started_and_succeeded_with_its_worker_and_duration(
    told: list[dict[str, Any]], lines: pytest.LogCaptureFixture
) -> None:
    run_id = str(uuid.uuid4())
    run_message(ctask("echo:payload", run_id), {"a": 1}, {"run_id": run_id, "queue": "q"})
    (started, succeeded) = steps(told, lines)
    assert started == (
        "run_started",
        "INFO",
        {
            "step": "started",
            "run_id": run_id,
            "task": "echo:payload",
            "queue": "q",
            "attempt": 1,
            "duration": None,
            "worker": "w1@host",
            "error": None,
            "waited": None,  # a message sent without its time
        },
    )
    assert succeeded[:2] == ("run_succeeded", "INFO")
    assert succeeded[2]["worker"] == "w1@host"
    assert 0 <= succeeded[2]["duration"] < 5
    assert "succeeded (queue q, attempt 1) in " in runs(lines)[1].getMessage()


def test_a_started_run_tells_how_long_its_message_waited_in_the_queue(
    told: list[dict[str, Any]], lines: pytest.LogCaptureFixture
) -> None:
    run_id = str(uuid.uuid4())
    sent = (timezone.now() - timedelta(seconds=90)).isoformat()
    context = {"run_id": run_id, "queue": "q", "enqueued_at": sent}
    run_message(ctask("echo:payload", run_id), {}, context)
    (started, succeeded) = steps(told, lines)
    assert 90 <= started[2]["waited"] < 95
    assert succeeded[2]["waited"] is None
    assert " started (queue q, attempt 1) after 9" in runs(lines)[0].getMessage()


@pytest.mark.parametrize("sent", [None, 17, "yesterday", "2026-01-01T00:00:00"])
def test_a_wait_is_not_told_without_a_readable_aware_time(sent: Any) -> None:
    assert events.queued_for(sent, timezone.now()) is None


def test_a_sender_clock_ahead_gives_no_negative_wait() -> None:
    now = timezone.now()
    assert events.queued_for((now + timedelta(seconds=5)).isoformat(), now) == 0.0


def test_a_failed_attempt_is_told_retried_and_the_last_one_failed(
    told: list[dict[str, Any]], lines: pytest.LogCaptureFixture
) -> None:
    run_id = str(uuid.uuid4())
    message = ctask("flaky:retry", run_id)
    with pytest.raises(Retry, match="attempt 2 failed"):  # Celery reports a retry
        run_message(message, {}, {"run_id": run_id, "queue": "q", "attempt": 2})
    assert TaskRun.objects.get(pk=run_id).status == RunStatus.SCHEDULED
    with pytest.raises(RuntimeError, match="attempt 3 failed"):
        run_message(message, {}, {"run_id": run_id, "queue": "q", "attempt": 3})
    got = [g for g in steps(told, lines) if g[0] != "run_started"]
    assert [(g[0], g[1], g[2]["attempt"], g[2]["error"]) for g in got] == [
        ("run_retried", "WARNING", 2, "Flaky: attempt 2 failed"),
        ("run_failed", "WARNING", 3, "Flaky: attempt 3 failed"),
    ]
    assert all(g[2]["duration"] >= 0 and g[2]["worker"] == "w1@host" for g in got)


def test_a_message_that_cannot_run_is_told_failed(
    told: list[dict[str, Any]], lines: pytest.LogCaptureFixture
) -> None:
    run_id = str(uuid.uuid4())
    with pytest.raises(taskkit.TaskNotFound):
        run_message(ctask("gone:task", run_id), {}, {"run_id": run_id})
    ((signal, level, got),) = steps(told, lines)
    assert (signal, level, got["task"], got["attempt"]) == (
        "run_failed",
        "WARNING",
        "gone:task",
        None,
    )
    assert got["error"].startswith("TaskNotFound: Unknown task 'gone:task'")


def test_a_run_skipped_as_deleted_while_queued_is_told_cancelled(
    told: list[dict[str, Any]], lines: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cancellations, "_snapshot", cancellations._Snapshot())  # ours alone
    cancellations.cancel(queue="q", name="echo:payload", wait=False)
    run_id = str(uuid.uuid4())
    old = (timezone.now() - timedelta(seconds=5)).isoformat()
    with pytest.raises(RunRevoked):
        run_message(
            ctask("echo:payload", run_id), {}, {"run_id": run_id, "queue": "q", "enqueued_at": old}
        )
    ((signal, level, got),) = steps(told, lines)
    assert (signal, level, got["run_id"], got["worker"]) == (
        "run_cancelled",
        "INFO",
        run_id,
        "w1@host",
    )
    assert got["error"].startswith("Deleted while queued: ")


@pytest.mark.parametrize(
    ("terminated", "error", "run_id"),
    [
        (False, "Revoked while queued.", str(uuid.uuid4())),
        (True, "Terminated while running.", str(uuid.uuid4())),
        (True, "Terminated while running.", "hand-made"),  # no UUID: no row to cancel
    ],
)
def test_a_run_celery_revoked_is_told_cancelled(
    told: list[dict[str, Any]],
    lines: pytest.LogCaptureFixture,
    terminated: bool,
    error: str,
    run_id: str,
) -> None:
    """``delete_run`` of a message a worker held, or ``celery control revoke --terminate``."""
    context = {"run_id": run_id, "queue": "q", "attempt": 2}
    request = SimpleNamespace(
        id=run_id, hostname="w1@host", kwargs={"payload": {}, "context": context}
    )
    task = current_app.tasks["echo:payload"]
    register._revoked(sender=task, request=request, terminated=terminated)
    ((signal, _, got),) = steps(told, lines)
    assert (signal, got["run_id"], got["task"], got["queue"], got["attempt"], got["error"]) == (
        "run_cancelled",
        run_id,
        "echo:payload",
        "q",
        2,
        error,
    )


def test_the_sweep_tells_a_lost_run(
    told: list[dict[str, Any]], lines: pytest.LogCaptureFixture
) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name="dead@host", started_at=now - timedelta(hours=1), seen_at=now - timedelta(hours=1)
    )
    row = TaskRun.objects.create(
        name="echo:payload",
        queue="q",
        status=RunStatus.RUNNING,
        worker="dead@host",
        started_at=now - timedelta(seconds=90),
    )
    assert heartbeat.sweep(now) == 1
    ((signal, level, got),) = steps(told, lines)
    assert (signal, level) == ("run_lost", "WARNING")
    assert (got["run_id"], got["queue"], got["worker"], got["duration"]) == (
        str(row.pk),
        "q",
        "dead@host",
        90.0,
    )
    assert got["error"].startswith("WorkerLost: worker dead@host not seen since")


def test_deleting_delayed_runs_is_told_cancelled(
    told: list[dict[str, Any]], lines: pytest.LogCaptureFixture
) -> None:
    one = taskkit.enqueue_in("echo:payload", 60, {"n": 1})
    two = taskkit.enqueue_in("echo:payload", 60, {"n": 2})
    told.clear()
    lines.clear()
    assert queues.delete_run(one.id, dry_run=True)
    assert queues.delete_run(one.id)
    queues.delete_delayed("echo:payload")
    got = steps(told, lines)
    assert [(g[0], g[2]["run_id"], g[2]["error"]) for g in got] == [
        ("run_cancelled", one.id, "Deleted while delayed."),
        ("run_cancelled", two.id, "Deleted while delayed."),
    ]


def test_deleting_a_queued_message_is_told_cancelled(
    tmp_path: Path, told: list[dict[str, Any]], lines: pytest.LogCaptureFixture
) -> None:
    app = make_app("events", "filesystem://", **transport_settings("filesystem", tmp_path))
    with current(app):
        handle = taskkit.enqueue("echo:payload", queue="slow")
        told.clear()
        lines.clear()
        assert queues.delete_run(handle.id)
    app.close()
    ((signal, _, got),) = steps(told, lines)
    assert (signal, got["run_id"], got["task"], got["queue"], got["attempt"]) == (
        "run_cancelled",
        handle.id,
        "echo:payload",
        "slow",
        1,
    )


def test_a_raising_receiver_breaks_neither_an_enqueue_nor_a_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    chosen = (signals.run_enqueued, signals.run_started, signals.run_succeeded)
    for signal in chosen:
        signal.connect(broken)
    try:
        handle = taskkit.enqueue("echo:payload", {"a": 1})
        run_message(ctask("echo:payload", handle.id), {"a": 1}, {"run_id": handle.id})
    finally:
        for signal in chosen:
            signal.disconnect(broken)
    row = TaskRun.objects.get(pk=handle.id)
    assert (row.status, row.result) == (RunStatus.SUCCEEDED, {"a": 1})
    errors = [r for r in caplog.records if r.name == "django.dispatch"]
    assert len(errors) == 3 and all("receiver bug" in r.getMessage() for r in errors)


def test_nobody_listening_and_the_logger_at_warning_builds_nothing(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def formatted(*args: Any) -> Any:
        raise AssertionError("a line was built")

    monkeypatch.setattr(events, "_message", formatted)
    with caplog.at_level(logging.WARNING, logger="taskkit.runs"):
        handle = taskkit.enqueue("echo:payload")
        run_message(ctask("echo:payload", handle.id), {}, {"run_id": handle.id})
        assert not events.wanted(events.Step.SUCCEEDED)
    assert [r for r in caplog.records if r.name == "taskkit.runs"] == []


def test_the_fields_are_keys_of_a_json_line(lines: pytest.LogCaptureFixture) -> None:
    """What a JSON formatter does with ``extra``: each field is a key of the line."""
    handle = taskkit.enqueue("echo:payload")
    (record,) = runs(lines)
    line = json.loads(json.dumps({**fields(record), "message": record.getMessage()}))
    assert line["run_id"] == handle.id and line["step"] == "enqueued"
    reserved = set(vars(logging.makeLogRecord({})))
    assert not any(key in reserved for key in vars(record) if key.startswith(events.PREFIX))


def test_python_json_logger_formats_the_fields(lines: pytest.LogCaptureFixture) -> None:
    handle = taskkit.enqueue("echo:payload")
    (record,) = runs(lines)
    line = json.loads(JsonFormatter("%(levelname)s %(message)s").format(record))
    assert (line["taskkit_step"], line["taskkit_run_id"], line["taskkit_attempt"]) == (
        "enqueued",
        handle.id,
        1,
    )
