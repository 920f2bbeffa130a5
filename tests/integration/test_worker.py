"""Enqueue -> a real worker runs it -> the result comes back, on every broker."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

import taskkit
from taskkit.models import RunStatus, TaskRun

from .conftest import Broker, current, make_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]
TIMEOUT = 30


def test_enqueue_runs_on_the_worker_and_returns_the_result(broker: Broker) -> None:
    before = timezone.now()
    handle = taskkit.enqueue("echo:payload", {"a": 1, "nested": {"b": [1, 2]}})
    assert handle.result(timeout=TIMEOUT) == {"a": 1, "nested": {"b": [1, 2]}}
    run = taskkit.get_run(handle.id)
    assert run.status == RunStatus.SUCCEEDED
    assert (run.name, run.queue, run.attempt, run.source) == (
        "echo:payload",
        "default",
        1,
        "worker",
    )
    assert run.payload == {"a": 1, "nested": {"b": [1, 2]}}
    assert run.started_at is not None and run.finished_at is not None
    # the row the worker wrote says when the run was queued, not when it was written
    assert before <= run.created_at < run.started_at
    assert run.worker.startswith(f"test-{broker.name}-")


def test_task_value_enqueue_and_async_task(broker: Broker) -> None:
    handle = taskkit.get_task("aio:sleep").enqueue({"n": 3})
    assert handle.result(timeout=TIMEOUT) == {"async": True, "payload": {"n": 3}}
    assert handle.status == RunStatus.SUCCEEDED


def test_failure_is_recorded_with_payload_and_traceback(broker: Broker) -> None:
    handle = taskkit.enqueue("echo:fail", {"why": "test"})
    with pytest.raises(taskkit.RunFailed) as caught:
        handle.result(timeout=TIMEOUT)
    assert caught.value.error == "EchoError: failed with {'why': 'test'}"
    assert "Traceback" in caught.value.traceback and "echo/fail.py" in caught.value.traceback
    run = TaskRun.objects.get(pk=handle.id)
    assert (run.status, run.payload) == (RunStatus.FAILED, {"why": "test"})


def test_queue_override_routes_the_run(broker: Broker) -> None:
    handle = taskkit.enqueue("echo:progress", {"steps": 4}, queue="special")
    assert handle.queue == "special"
    assert handle.result(timeout=TIMEOUT) == {"queue": "special", "source": "worker"}
    run = taskkit.get_run(handle.id)
    assert (run.queue, run.progress_done, run.progress_total) == ("special", 4, 4)


def test_meta_queue_is_used_by_default(broker: Broker) -> None:
    handle = taskkit.enqueue("db:migrate")
    assert handle.queue == "maintenance"
    handle.result(timeout=TIMEOUT)
    assert taskkit.get_run(handle.id).queue == "maintenance"


def test_rolled_back_transaction_sends_nothing(broker: Broker) -> None:
    lost: list[taskkit.RunHandle] = []

    def enqueue_then_fail() -> None:
        with transaction.atomic():
            lost.append(taskkit.enqueue("echo:payload", {"rolled": "back"}))
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        enqueue_then_fail()
    with transaction.atomic():
        kept = taskkit.enqueue("echo:payload", {"committed": True})
        assert kept.status is None  # not sent before commit
    assert kept.result(timeout=TIMEOUT) == {"committed": True}
    with pytest.raises(taskkit.RunNotFound):
        taskkit.get_run(lost[0].id)


def test_track_failures_keeps_only_failed_runs(broker: Broker) -> None:
    quiet = taskkit.enqueue("track:quiet")
    loud = taskkit.enqueue("track:quiet", {"fail": True})
    with pytest.raises(taskkit.RunFailed, match="asked to fail"):
        loud.result(timeout=TIMEOUT)
    # the successful run wrote nothing; it was sent before the failing one
    assert not TaskRun.objects.filter(pk=quiet.id).exists()
    assert TaskRun.objects.get(pk=loud.id).status == RunStatus.FAILED


def test_bad_payload_sends_nothing(broker: Broker) -> None:
    before = TaskRun.objects.count()
    with pytest.raises(taskkit.InvalidPayload):
        taskkit.enqueue("echo:payload", {"when": object()})
    with pytest.raises(taskkit.TaskNotFound):
        taskkit.enqueue("echo:nope")
    assert TaskRun.objects.count() == before


def test_celery_call_with_the_wrong_arguments_is_a_failed_run(broker: Broker) -> None:
    """``celery call echo:payload --kwargs '{"a": 1}'`` sends what ``send_task`` sends."""
    result = broker.app.send_task("echo:payload", kwargs={"a": 1})
    handle = taskkit.RunHandle(result.id, "echo:payload", "default")
    with pytest.raises(taskkit.RunFailed) as caught:
        handle.result(timeout=TIMEOUT)
    assert caught.value.error.startswith("InvalidMessage: A taskkit message carries a payload")
    assert TaskRun.objects.get(pk=result.id).payload == {"a": 1}


def test_messages_are_json(broker: Broker, worker: subprocess.Popen[str]) -> None:
    sent: list[dict[str, Any]] = []
    from celery.signals import before_task_publish

    def spy(
        sender: str, headers: dict[str, Any], body: Any, properties: Any = None, **kw: Any
    ) -> None:
        sent.append({"task": sender, "body": body, "headers": headers})

    before_task_publish.connect(spy, weak=False)
    try:
        handle = taskkit.enqueue("echo:payload", {"x": 1})
        handle.result(timeout=TIMEOUT)
    finally:
        before_task_publish.disconnect(spy)
    [message] = sent
    assert message["task"] == "echo:payload"
    assert message["headers"]["id"] == handle.id
    args, kwargs, _ = message["body"]
    assert args == [] or args == ()
    assert kwargs["payload"] == {"x": 1}
    assert kwargs["context"]["run_id"] == handle.id


@pytest.mark.parametrize(
    "send",
    [
        lambda: taskkit.enqueue("echo:payload", {"a": 1}),
        lambda: taskkit.enqueue_many("echo:payload", [{"a": 1}, {"a": 2}]),  # Redis's fast path
    ],
    ids=["enqueue", "enqueue_many"],
)
def test_unreachable_broker_is_a_clear_error(send: Callable[[], object]) -> None:
    app = make_app(
        "unreachable",
        "redis://127.0.0.1:1/0",
        broker_transport_options={"max_retries": 1},
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0},
    )
    with current(app), pytest.raises(taskkit.BrokerUnavailable, match="broker is unreachable"):
        send()
