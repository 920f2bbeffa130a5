"""Inspecting and deleting queued work on each broker, with nothing consuming the queue."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from kombu import Exchange, Queue

import taskkit
from taskkit import queues
from taskkit.bridge import broadcast
from taskkit.models import Cancellation, KnownQueue, TaskRun
from taskkit.queues.brokers import broker_for
from taskkit.scheduling.periodic import PREFIX

from .conftest import Broker, start_worker, stop

pytestmark = pytest.mark.django_db(transaction=True)
QUEUE = "inspect"  # no worker consumes it until a test starts one


@pytest.fixture
def queue(broker: Broker) -> Iterator[str]:
    KnownQueue.objects.get_or_create(name=QUEUE)  # what the first enqueue there records
    with broker.app.connection_for_write() as connection:
        # declared as Celery declares a queue it sends to: bound to an exchange of its name
        bound = Queue(QUEUE, Exchange(QUEUE), QUEUE).bind(connection.default_channel)
        bound.declare()
        bound.purge()
    yield QUEUE
    with broker.app.connection_for_write() as connection:
        Queue(QUEUE).bind(connection.default_channel).purge()


def fill(queue: str) -> list[taskkit.RunHandle]:
    """Six runs: echo:payload 0-3 and db:migrate 4-5, in this order."""
    echoes = taskkit.enqueue_many("echo:payload", [{"i": i} for i in range(4)], queue=queue)
    return echoes + [taskkit.enqueue("db:migrate", {"i": i}, queue=queue) for i in (4, 5)]


def length(queue: str) -> int:
    return next(q.length for q in queues.details().queues if q.name == queue)


def test_details_agree_with_the_broker(broker: Broker, queue: str) -> None:
    fill(queue)
    found = queues.details()
    assert (
        found.broker
        == {"filesystem": "filesystem", "redis": "redis", "rabbitmq": "amqp"}[broker.name]
    )
    assert length(queue) == 6
    with broker.app.connection_for_read() as connection:
        if broker.name == "rabbitmq":  # the broker's own count
            channel: Any = connection.default_channel
            _, count, _ = channel.queue_declare(queue=queue, passive=True)
            assert count == 6
    assert {"default", "maintenance", queue} <= {q.name for q in found.queues}
    assert found.as_json()["queues"][0].keys() == {"name", "length", "oldest", "reserved"}
    (info,) = [q for q in found.queues if q.name == queue]
    if broker.name == "rabbitmq":  # AMQP shows no message without taking it
        assert info.oldest is None
    else:  # the first of the six, which a worker takes next
        first = queues.list(queue, 0, 0)[0]
        assert first.enqueued_at is not None and info.oldest == first.enqueued_at


def test_list_shows_messages_without_consuming_them(broker: Broker, queue: str) -> None:
    handles = fill(queue)
    if broker.name == "rabbitmq":
        with pytest.raises(queues.QueueNotListable, match="without taking them"):
            queues.list(queue)
        return
    listed = queues.list(queue)
    assert [m.run_id for m in listed] == [h.id for h in handles]
    assert [m.position for m in listed] == list(range(6))
    assert listed[0].name == "echo:payload" and listed[0].payload == {"i": 0}
    assert listed[0].enqueued_at is not None and listed[0].queue == queue
    assert [m.payload["i"] for m in queues.list(queue, start=2, stop=3)] == [2, 3]
    assert [m.payload["i"] for m in queues.list(queue, name="db:migrate")] == [4, 5]
    assert [m.payload["i"] for m in queues.list(queue, start=1, stop=1, name="db:migrate")] == [5]
    assert length(queue) == 6  # nothing was consumed


def test_deletes_and_a_worker_started_afterwards(broker: Broker, queue: str) -> None:
    handles = fill(queue)
    listable = broker.name != "rabbitmq"
    assert queues.listable() is listable
    if listable:
        assert queues.delete(queue, "echo:payload", dry_run=True) == 4  # removes nothing
        assert length(queue) == 6
        assert queues.delete(queue, "echo:payload", {"i": 1}) == 1  # by name + payload
        assert queues.delete(queue, "db:migrate", count=1) == 1  # the first one taken
        assert queues.delete_run(handles[2].id) is True  # by run id
        assert queues.delete_run(handles[2].id) is False  # gone already
        assert [m.payload["i"] for m in queues.list(queue)] == [0, 3, 5]
    else:  # RabbitMQ keeps the messages; cancellations make the workers skip them
        assert queues.delete(queue, "echo:payload", {"i": 1}) == 0
        assert queues.delete(queue, "db:migrate", count=1) == 0
        assert queues.delete_run(handles[2].id) is True
        assert length(queue) == 6
    worker = start_worker(broker, "inspect", queues=(queue,))
    try:
        for handle in (handles[0], handles[3]):
            handle.result(timeout=60)
        deadline = time.monotonic() + 60
        while length(queue) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # a deleted run would have run by now
    finally:
        stop(worker)
    succeeded = {
        str(pk) for pk in TaskRun.objects.filter(status="succeeded").values_list("id", flat=True)
    }
    assert {handles[0].id, handles[3].id} <= succeeded
    assert not {handles[1].id, handles[2].id} & succeeded  # deleted: never ran
    migrations = {handles[4].id, handles[5].id}
    assert len(migrations & succeeded) == 1  # count=1: one of the two was deleted
    if not listable:
        skipped = TaskRun.objects.filter(status="cancelled").values_list("error", flat=True)
        assert len(skipped) == 3 and all(e.startswith("Deleted while queued") for e in skipped)
    assert length(queue) == 0


def test_delete_by_name_takes_every_match_and_purge_the_rest(broker: Broker, queue: str) -> None:
    fill(queue)
    if broker.name == "rabbitmq":
        assert queues.delete(queue, "echo:payload") == 0  # a cancellation, nothing removed
        assert length(queue) == 6
        assert Cancellation.objects.filter(queue=queue, name="echo:payload").count() == 1
        return
    assert queues.delete(queue, "echo:payload") == 4
    assert [m.name for m in queues.list(queue)] == ["db:migrate", "db:migrate"]
    assert queues.purge(queue) == 2 and queues.list(queue) == []


def test_bad_input_changes_nothing(broker: Broker, queue: str) -> None:
    fill(queue)
    with pytest.raises(queues.UnknownQueue, match="Unknown queue 'nope'"):
        queues.purge("nope")
    with pytest.raises(taskkit.TaskNotFound):
        queues.delete(queue, "echo:nope")
    with pytest.raises(taskkit.RunNotFound, match="not a run id"):
        queues.delete_run("not-a-uuid")
    with pytest.raises(ValueError, match="start <= stop"):
        queues.list(queue, start=3, stop=1)
    assert length(queue) == 6


def taskqueue(*args: str) -> Any:
    out = StringIO()
    call_command("taskqueue", *args, stdout=out)
    text = out.getvalue()
    return json.loads(text) if "--json" in args else text


def test_the_taskqueue_command(broker: Broker, queue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    handles = fill(queue)
    details = taskqueue("details", "--json")
    (entry,) = [q for q in details["queues"] if q["name"] == queue]
    assert entry["length"] == 6
    assert details.keys() == {"broker", "queues", "delayed", "running", "failed", "periodic"}
    assert re.search(rf"^{queue} +6 +0$", taskqueue("details"), re.MULTILINE)
    assert taskqueue("purge", queue, "--dry-run", "--json") == {"removed": 6, "dry_run": True}
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="Nothing deleted") as refused:
        taskqueue("purge", queue)
    assert refused.value.returncode == 1
    for bad, message in (
        (("purge", "nope", "--noinput"), "Unknown queue 'nope'"),
        (("del", queue, "echo:payload", "--payload", "[1]", "--noinput"), "JSON object"),
        (("del-run", "not-a-uuid", "--noinput"), "not a run id"),
    ):
        with pytest.raises(CommandError, match=message) as caught:
            taskqueue(*bad)
        assert caught.value.returncode == 2
    assert length(queue) == 6  # nothing changed
    if broker.name == "rabbitmq":
        with pytest.raises(CommandError, match="without taking them") as caught:
            taskqueue("list", queue)
        assert caught.value.returncode == 1
        assert taskqueue("purge", queue, "--noinput", "--json") == {"removed": 6, "dry_run": False}
        return
    listed = taskqueue("list", queue, "--stop", "1", "--json")
    assert [m["run_id"] for m in listed] == [h.id for h in handles[:2]]
    assert listed[0]["payload"] == {"i": 0} and listed[0]["enqueued_at"]
    assert handles[0].id in taskqueue("list", queue)
    found = taskqueue("find", "--name", "db:migrate", "--json")
    assert [m["run_id"] for m in found["queued"]] == [h.id for h in handles[4:]]
    assert taskqueue(
        "del", queue, "echo:payload", "--payload", '{"i": 2}', "--noinput"
    ).strip() == ("Removed 1 message(s).")
    assert taskqueue("del-run", handles[0].id, "--noinput", "--json") == {
        "removed": 1,
        "dry_run": False,
    }
    assert taskqueue("purge", queue, "--noinput").strip() == f"Removed 4 message(s) from {queue}."


def test_deleting_a_chunk_at_a_time_skips_nothing(
    broker: Broker, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskkit.queues.brokers.redis.CHUNK", 3)  # 20 messages: seven reads
    handles = taskkit.enqueue_many("echo:payload", [{"i": i % 2} for i in range(20)], queue=queue)
    if broker.name == "rabbitmq":
        assert queues.delete(queue, "echo:payload", {"i": 0}) == 0  # a cancellation
        return
    assert queues.delete(queue, "echo:payload", {"i": 0}, dry_run=True) == 10
    assert queues.delete(queue, "echo:payload", {"i": 0}, count=2) == 2
    assert queues.delete(queue, "echo:payload", {"i": 0}) == 8
    assert [m.run_id for m in queues.list(queue)] == [h.id for h in handles[1::2]]


def test_a_worker_taking_messages_during_a_delete(
    broker: Broker, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages taken off the front while a delete reads: it resumes where the queue now starts."""
    monkeypatch.setattr("taskkit.queues.brokers.redis.CHUNK", 3)
    handles = taskkit.enqueue_many("echo:payload", [{"i": i} for i in range(12)], queue=queue)
    with broker.app.connection_for_write() as connection:
        inspector = broker_for(connection)
        channel: Any = connection.default_channel
        taken: list[Any] = []

        def even(message: queues.QueuedMessage) -> bool:
            if not taken:  # a worker takes the next two
                taken.extend(channel.basic_get(queue, no_ack=True) for _ in range(2))
            return bool(message.payload["i"] % 2 == 0)

        if broker.name == "rabbitmq":
            with pytest.raises(queues.QueueNotListable):
                inspector.delete(queue, even)
            return
        assert inspector.delete(queue, even) == 5  # 2, 4, 6, 8 and 10; 0 was taken
    assert len(taken) == 2 and all(message is not None for message in taken)
    assert [m.run_id for m in queues.list(queue)] == [h.id for h in handles[3::2]]


def test_messages_held_by_a_worker(broker: Broker, queue: str) -> None:
    """A message taken but not acknowledged: Redis shows it, and deleting it cancels the run."""
    handles = fill(queue)
    with broker.app.connection_for_write() as connection:
        channel: Any = connection.default_channel
        assert channel.basic_get(queue, no_ack=False) is not None  # handles[0], now held
        found = queues.find("echo:payload")
        deleted = queues.delete_run(handles[0].id)
    if broker.name == "redis":
        assert [m.run_id for m in found["held"]] == [handles[0].id]
        assert found["held"][0].queue == queue and found["held"][0].payload == {"i": 0}
    else:  # the embedded broker deletes the file it hands out; AMQP shows none of this
        assert found["held"] == []
    if broker.name == "filesystem":
        assert deleted is False  # gone from the broker: nothing left to delete
    else:
        assert deleted is True
        assert Cancellation.objects.filter(run_id=handles[0].id).exists()
    assert [m.run_id for m in found["queued"]] == [h.id for h in handles[1:4]] or (
        broker.name == "rabbitmq" and found["queued"] == []
    )


def test_the_queues_the_broker_reveals(broker: Broker, queue: str) -> None:
    """Declared queues count even when empty; Celery's remote-control queues never do."""
    broker.app.control.inspect(timeout=0.2).ping()  # declares Celery's reply queue
    with broker.app.connection_for_write() as connection:
        declared = Queue("declared-empty", Exchange("declared-empty"), "declared-empty")
        declared.bind(connection.default_channel).declare()  # as Celery declares its queues
        left = broadcast.worker_queue()  # a worker's; the broker may keep it after the worker left
        left.bind(connection.default_channel).declare()
        revealed = broker_for(connection).queues()
        declared.bind(connection.default_channel).delete()
        left.bind(connection.default_channel).delete()
    assert left.name.startswith("bcast.") and left.name not in revealed
    if broker.name == "redis":  # kombu's bindings
        assert {queue, "declared-empty"} <= revealed
    elif broker.name == "filesystem":  # only queues with a message file
        assert "declared-empty" not in revealed
    else:  # RabbitMQ's management API (AMQP cannot list queues)
        assert {queue, "declared-empty"} <= revealed
    assert not [name for name in revealed if "pidbox" in name or name.startswith("celeryev")]


def test_rabbitmq_shows_shared_queues_only_and_only_through_a_reachable_api(
    broker: Broker, queue: str, settings: Any
) -> None:
    """Queues of one connection are left out; a wrong address or password shows none."""
    with broker.app.connection_for_write() as connection:
        transient = Queue("transient", Exchange("transient"), "transient", auto_delete=True)
        bound = transient.bind(connection.default_channel)
        bound.declare()
        try:
            revealed = broker_for(connection).queues()
            settings.TASKKIT = {"RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:9"}
            refused = broker_for(connection).queues()
            settings.TASKKIT = {"RABBITMQ_MANAGEMENT_URL": "http://guest:wrong@127.0.0.1:15672"}
            wrong_password = broker_for(connection).queues()
        finally:
            bound.delete()
    if broker.name == "rabbitmq":
        assert queue in revealed
        assert "transient" not in revealed
        assert refused == wrong_password == set()
    else:  # the setting is RabbitMQ's alone
        assert refused == wrong_password == revealed


def test_details_count_the_periodic_schedules(broker: Broker, queue: str) -> None:
    """taskkit's schedules that are on; an operator's own Beat rows are not taskkit's."""
    every = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    for name, enabled in (("a", True), ("b", True), ("c", False)):
        PeriodicTask.objects.create(
            name=f"{PREFIX}{name}", task="echo:payload", interval=every, enabled=enabled
        )
    PeriodicTask.objects.create(name="their own", task="echo:payload", interval=every)
    assert queues.details().periodic == 2
    PeriodicTask.objects.filter(name=f"{PREFIX}a").update(enabled=False)
    assert queues.details().as_json()["periodic"] == 1


def test_live_workers(broker: Broker, worker: Any) -> None:
    """Celery's remote control, through taskkit: which workers answer, and what they run."""
    found = queues.live_workers(timeout=3)
    names = [w.name for w in found]
    assert any(name.startswith(f"test-{broker.name}-") for name in names), names
    assert all(isinstance(w.reserved, int) and isinstance(w.active, list) for w in found)
    listed = taskqueue("workers", "--live", "--timeout", "3", "--json")
    assert {w["name"] for w in listed} >= {n for n in names if n.startswith("test-")}
    with pytest.raises(CommandError, match="more than 0") as caught:
        taskqueue("workers", "--live", "--timeout", "0")
    assert caught.value.returncode == 2
