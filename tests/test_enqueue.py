"""The enqueue family and the scheduler's promotion, in process on Celery's memory broker."""

from __future__ import annotations

import math
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from celery import current_app
from django.db import connection, transaction
from django.utils import timezone

import taskkit
from taskkit.models import KnownQueue, RunStatus, TaskRun
from taskkit.scheduler import MAX_SLEEP, Scheduler
from taskkit.scheduling import next_due, promote_due, resend_outbox

pytestmark = pytest.mark.django_db(transaction=True)


def untyped(value: object) -> Any:
    """A wrong value, passed on purpose."""
    return value


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: taskkit.enqueue_at("echo:payload", datetime(2030, 1, 1)),
            ValueError,
            "aware datetime",
        ),
        (
            lambda: taskkit.enqueue_at("echo:payload", untyped("2030")),
            TypeError,
            "takes a datetime",
        ),
        (
            lambda: taskkit.enqueue_at(
                "echo:payload", datetime.fromisoformat("0001-01-01T00:00:00+14:00")
            ),
            ValueError,
            "years 1 to 9999 in UTC",
        ),
        (lambda: taskkit.enqueue_in("echo:payload", -1), ValueError, "delay from 0"),
        (lambda: taskkit.enqueue_in("echo:payload", math.nan), ValueError, "delay from 0"),
        (lambda: taskkit.enqueue_in("echo:payload", math.inf), ValueError, "delay from 0"),
        (
            lambda: taskkit.enqueue_in("echo:payload", untyped("5")),
            TypeError,
            "seconds or a timedelta",
        ),
        (lambda: taskkit.enqueue_in("echo:payload", True), TypeError, "seconds or a timedelta"),
        (lambda: taskkit.enqueue("echo:payload", queue=""), ValueError, "a queue name has"),
        (lambda: taskkit.enqueue("echo:payload", {"x": {1, 2}}), taskkit.InvalidPayload, "JSON"),
        (lambda: taskkit.enqueue("echo:payload", {"x": "\x00"}), taskkit.InvalidPayload, "NUL"),
        (
            lambda: taskkit.enqueue_many("echo:payload", [{}, {"x": ["\x00"]}]),
            taskkit.InvalidPayload,
            "NUL",
        ),
        (
            lambda: taskkit.enqueue_many("echo:payload", [{}, untyped([1])]),
            taskkit.InvalidPayload,
            "mapping",
        ),
        (lambda: taskkit.enqueue("nope:nope"), taskkit.TaskNotFound, "Unknown task"),
        (lambda: taskkit.enqueue(untyped(None)), TypeError, "a task name is a string, not None"),
        (lambda: taskkit.enqueue_in(untyped(5), 1), TypeError, "a task name is a string, not int"),
    ],
)
def test_bad_enqueues_store_and_send_nothing(
    sent: list[dict[str, Any]], call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()
    assert sent == []
    assert TaskRun.objects.count() == 0


def test_not_implemented_task_cannot_be_enqueued(reload_registry: Any) -> None:
    reload_registry("tests.apps.nested", TASKKIT={"TASKS": {"gone:away": {"handler": "x.y"}}})
    with pytest.raises(taskkit.TaskNotImplemented):
        taskkit.enqueue("gone:away")


def test_enqueue_publishes_json_with_the_run_id(sent: list[dict[str, Any]]) -> None:
    handle = taskkit.enqueue("db:migrate", {"b": 1})
    [message] = sent
    assert message["name"] == "db:migrate" and message["task_id"] == handle.id
    assert message["queue"] == "maintenance" and message["serializer"] == "json"
    context = message["kwargs"]["context"]
    enqueued_at = datetime.fromisoformat(context.pop("enqueued_at"))
    assert message["kwargs"] == {
        "payload": {"b": 1},
        "context": {"run_id": handle.id, "queue": "maintenance", "source": "worker", "attempt": 1},
    }
    assert timezone.now() - timedelta(seconds=5) < enqueued_at <= timezone.now()
    assert str(handle) == handle.id and handle.status is None


def test_task_routes_decide_unless_overridden(sent: list[dict[str, Any]], settings: Any) -> None:
    def reset_router() -> None:  # Celery caches the prepared routes and the router
        current_app.amqp.flush_routes()
        current_app.amqp.__dict__.pop("router", None)

    current_app.conf.task_routes = {"db:*": {"queue": "routed"}}
    try:
        reset_router()
        assert taskkit.enqueue("db:migrate").queue == "routed"
        assert taskkit.enqueue("db:migrate", queue="mine").queue == "mine"
        assert taskkit.enqueue("echo:payload").queue == "default"
    finally:
        current_app.conf.task_routes = None
        reset_router()
    assert [m["queue"] for m in sent] == ["routed", "mine", "default"]


def test_sent_after_commit_only(sent: list[dict[str, Any]]) -> None:
    with transaction.atomic():
        taskkit.enqueue("echo:payload")
        assert sent == []
    assert len(sent) == 1
    with pytest.raises(RuntimeError), transaction.atomic():  # noqa: PT012
        taskkit.enqueue("echo:payload")
        raise RuntimeError
    assert len(sent) == 1


def test_track_all_is_an_outbox(sent: list[dict[str, Any]]) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():  # noqa: PT012
        taskkit.enqueue("track:outbox", {"lost": True})
        raise RuntimeError
    assert TaskRun.objects.count() == 0
    handle = taskkit.enqueue("track:outbox", {"kept": True})
    run = taskkit.get_run(handle.id)
    assert run.status == RunStatus.QUEUED and run.sent_at is not None
    assert len(sent) == 1


def test_outbox_resends_rows_the_publisher_never_sent(sent: list[dict[str, Any]]) -> None:
    old = timezone.now() - timedelta(minutes=1)
    TaskRun.objects.create(
        name="track:outbox", status=RunStatus.QUEUED, payload={"a": 1}, created_at=old
    )
    TaskRun.objects.create(
        name="track:outbox", status=RunStatus.QUEUED, payload={"b": 1}
    )  # too fresh
    assert resend_outbox() == 1
    assert [m["kwargs"]["payload"] for m in sent] == [{"a": 1}]
    assert resend_outbox() == 0  # marked sent


def test_delayed_run_is_a_row_until_due(sent: list[dict[str, Any]]) -> None:
    later = taskkit.enqueue_in("echo:payload", timedelta(hours=1), {"later": 1})
    due = taskkit.enqueue_at("echo:payload", timezone.now() - timedelta(seconds=1), {"due": 1})
    assert sent == []
    assert next_due() == taskkit.get_run(due.id).scheduled_for
    assert promote_due() == 1
    assert [m["kwargs"]["payload"] for m in sent] == [{"due": 1}]
    assert sent[0]["kwargs"]["context"]["scheduled_time"]
    assert taskkit.get_run(due.id).status == RunStatus.QUEUED
    assert taskkit.get_run(later.id).status == RunStatus.SCHEDULED
    assert promote_due() == 0


def test_concurrent_promoters_send_each_run_once(monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[int] = []
    monkeypatch.setattr(
        "taskkit.scheduling.promote.publish",
        lambda runs: published.extend(run.payload["i"] for run in runs),
    )
    past = timezone.now() - timedelta(seconds=1)
    for i in range(200):
        taskkit.enqueue_at("echo:payload", past, {"i": i})
    results: list[int] = []

    def promoter() -> None:
        try:
            results.append(promote_due(limit=1000))
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=promoter) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4  # no promoter died
    assert sum(results) == 200
    assert sorted(published) == list(range(200))
    assert not TaskRun.objects.exclude(status=RunStatus.QUEUED).exists()


def test_promoting_a_run_whose_task_this_process_lacks_sends_it(
    sent: list[dict[str, Any]],
) -> None:
    """The scheduler may run older code than the workers: it sends, a worker decides."""
    row = TaskRun.objects.create(
        name="gone:task", status=RunStatus.SCHEDULED, scheduled_for=timezone.now(), payload={}
    )
    assert promote_due() == 1
    row.refresh_from_db()
    assert row.status == RunStatus.QUEUED


@pytest.mark.parametrize("queue", ["bad queue", "\\ud800", "_kombu.x", "", "-dash-first"])
def test_a_due_run_that_cannot_be_sent_fails_and_holds_up_no_other(
    sent: list[dict[str, Any]], queue: str
) -> None:
    """A row with a queue no broker may have (a retry of a hand-made message's run, a row
    from older code) raised out of every tick, and no delayed run was sent any more."""
    due = timezone.now() - timedelta(seconds=1)
    bad = TaskRun.objects.create(
        name="echo:payload", queue=queue, status=RunStatus.SCHEDULED, scheduled_for=due
    )
    good = taskkit.enqueue_at("echo:payload", due + timedelta(milliseconds=1), {"good": 1})
    assert promote_due() == 1
    assert [message["kwargs"]["payload"] for message in sent] == [{"good": 1}]
    bad.refresh_from_db()
    assert bad.status == RunStatus.FAILED and bad.error.startswith("Could not be sent: ValueError")
    assert taskkit.get_run(good.id).status == RunStatus.QUEUED


def test_a_batch_the_broker_refuses_fails_and_the_next_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published: list[str] = []

    def picky(runs: list[Any]) -> None:
        if runs[0].queue == "refused":
            raise RuntimeError("PRECONDITION_FAILED - inequivalent arg 'x-max-priority'")
        published.extend(run.queue for run in runs)

    monkeypatch.setattr("taskkit.scheduling.promote.publish", picky)
    due = timezone.now() - timedelta(seconds=1)
    refused = taskkit.enqueue_at("echo:payload", due, {}, queue="refused")
    taken = taskkit.enqueue_at("echo:payload", due, {}, queue="default")
    assert promote_due() == 1
    assert published == ["default"]
    row = taskkit.get_run(refused.id)
    assert row.status == RunStatus.FAILED
    assert row.error.startswith("Could not be sent: RuntimeError: PRECONDITION")
    assert taskkit.get_run(taken.id).status == RunStatus.QUEUED


def test_a_bad_run_in_a_batch_fails_alone_and_the_others_are_sent(
    sent: list[dict[str, Any]],
) -> None:
    """A batch is one task and queue: its bad run (a canvas no message can carry, from an
    edited row) failed it whole, though its runs before the bad one had gone out."""
    due = timezone.now() - timedelta(seconds=1)
    good = taskkit.enqueue_at("echo:payload", due, {"good": 1})
    bad = TaskRun.objects.create(
        name="echo:payload", status=RunStatus.SCHEDULED, scheduled_for=due, canvas=True
    )
    assert promote_due() == 1
    assert taskkit.get_run(good.id).status == RunStatus.QUEUED
    bad.refresh_from_db()
    assert bad.status == RunStatus.FAILED and "AttributeError" in bad.error
    # the good run went out with the batch and again alone: its claim runs it once
    assert {message["task_id"] for message in sent} == {good.id}


def test_unreachable_broker_leaves_the_run_scheduled(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise taskkit.BrokerUnavailable("down")

    monkeypatch.setattr("taskkit.scheduling.promote.publish", down)
    handle = taskkit.enqueue_at("echo:payload", timezone.now(), {})
    assert promote_due() == 0
    assert taskkit.get_run(handle.id).status == RunStatus.SCHEDULED


def test_scheduler_tick_promotes_and_sleeps_at_most_a_second(sent: list[dict[str, Any]]) -> None:
    scheduler = Scheduler(app=current_app, lazy=True)
    assert scheduler.max_interval == MAX_SLEEP
    taskkit.enqueue_at("echo:payload", timezone.now(), {"now": 1})
    assert scheduler.tick() == 0.0
    assert len(sent) == 1
    soon = taskkit.enqueue_in("echo:payload", 0.3)
    assert 0 < scheduler.tick() <= 0.3
    TaskRun.objects.filter(pk=soon.id).delete()
    assert scheduler.tick() == MAX_SLEEP


def test_retry_failed_and_remove_failed_arguments() -> None:
    with pytest.raises(TypeError, match="run id or a task name"):
        taskkit.retry_failed()
    with pytest.raises(TypeError, match="run id or a task name"):
        taskkit.remove_failed("x", name="y")
    with pytest.raises(taskkit.RunNotFound, match="not a run id"):
        taskkit.retry_failed("not-a-uuid")
    assert taskkit.remove_failed(name="echo:fail") == 0


def test_get_run_and_handle_for_unknown_ids() -> None:
    with pytest.raises(taskkit.RunNotFound, match="No run"):
        taskkit.get_run("00000000-0000-0000-0000-000000000000")
    handle = taskkit.RunHandle(id="00000000-0000-0000-0000-000000000000", name="x", queue="q")
    with pytest.raises(taskkit.RunTimeout, match=r"still not started after 0\.05s"):
        handle.result(timeout=0.05)
    row = TaskRun.objects.create(id=handle.id, name="x", status=RunStatus.CANCELLED)
    with pytest.raises(taskkit.RunCancelled):
        handle.result(timeout=1)
    assert str(handle.run().pk) == str(row.pk) == handle.id
    assert handle.status == RunStatus.CANCELLED


def test_outbox_and_promotion_never_take_each_others_rows(sent: list[dict[str, Any]]) -> None:
    old = timezone.now() - timedelta(minutes=1)
    due = taskkit.enqueue_at("echo:payload", old, {"delayed": 1})
    TaskRun.objects.filter(pk=due.id).update(created_at=old)
    assert promote_due() == 1
    assert resend_outbox() == 0  # the promoted row is claimed (sent_at set), not an outbox row
    assert len(sent) == 1


def test_a_broker_outage_gives_the_rest_of_the_batch_back(monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[list[str]] = []

    def flaky(runs: list[Any]) -> None:
        batches.append([run.queue for run in runs])
        if len(batches) == 2:
            raise taskkit.BrokerUnavailable("down")

    monkeypatch.setattr("taskkit.scheduling.promote.publish", flaky)
    past = timezone.now() - timedelta(seconds=5)
    handles = [
        taskkit.enqueue_at("echo:payload", past, {"i": i}, queue=queue)
        for i, queue in enumerate(["a", "b", "a", "b"])
    ]
    assert promote_due() == 2  # one batch per task and queue: "a" went, "b" did not
    assert batches == [["a", "a"], ["b", "b"]]
    runs = {taskkit.get_run(h.id).queue: taskkit.get_run(h.id) for h in handles}
    assert runs["a"].status == RunStatus.QUEUED
    assert runs["b"].status == RunStatus.SCHEDULED and runs["b"].sent_at is None


def test_celery_options_follow_the_meta() -> None:
    from taskkit.bridge.work.register import celery_options

    plain = celery_options(taskkit.get_task("echo:payload"))
    assert plain["name"] == "echo:payload" and plain["serializer"] == "json"
    assert "ignore_result" not in plain  # Celery's task_ignore_result decides
    assert plain["acks_late"] is False and "time_limit" not in plain
    safe = celery_options(taskkit.get_task("echo:payload").using(idempotent=True, timeout=100))
    assert safe["acks_late"] is True and safe["reject_on_worker_lost"] is True
    assert (safe["soft_time_limit"], safe["time_limit"]) == (100, 110)
    short = celery_options(taskkit.get_task("echo:payload").using(timeout=10))
    assert (short["soft_time_limit"], short["time_limit"]) == (10, 15)
    assert current_app.tasks["echo:payload"].serializer == "json"


def test_a_queue_named_at_enqueue_becomes_known(sent: list[dict[str, Any]]) -> None:
    from taskkit.bridge.send.known_queues import known_queues

    queue = f"adhoc-{uuid.uuid4().hex[:8]}"
    assert queue not in known_queues()
    taskkit.enqueue("echo:payload", {}, queue=queue)
    assert KnownQueue.objects.filter(name=queue).exists()
    assert queue in known_queues()
    later = f"later-{uuid.uuid4().hex[:8]}"  # a delayed run's queue is known before it is sent
    taskkit.enqueue_in("echo:payload", 3600, {}, queue=later)
    assert later in known_queues()
