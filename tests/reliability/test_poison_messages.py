"""Messages that once took a prefork worker down: the worker survives them and goes on.

A payload nested thousands deep cannot be pickled for a pool process, and an
envelope whose body is no Celery task call (``{"foo": 1}``, ``[1, 2, 3]``)
cannot be read into a request; Celery called both unrecoverable, the worker
exited, the message went back, and every restart died on it. Such a message
is now a failed run an operator can see, and the next message runs.

Items kombu cannot even parse (raw bytes, JSON that is no envelope) took the
worker down before Celery saw them, losing the item and running the messages
in flight twice. They now go to the quarantine, byte for byte.
"""

from __future__ import annotations

import base64
import functools
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Queue

import taskkit
from taskkit import queues
from taskkit.bridge.work.message import row_id
from taskkit.models import RunStatus, TaskRun
from taskkit.quarantine import QUARANTINE, item_id
from tests.integration.conftest import Broker, start_worker, stop
from tests.payloads import nested

from .conftest import PrivateRedis, on_broker, recorded, row_once

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
TIMEOUT = 30


@pytest.fixture
def broker(private_redis: PrivateRedis) -> Iterator[Broker]:
    with on_broker("reliability-poison", private_redis.url) as broker:
        yield broker


def settled(run_id: str) -> TaskRun:
    return row_once(run_id, RunStatus.SUCCEEDED, RunStatus.FAILED, timeout=TIMEOUT)


def envelope(run_id: str, body: bytes, extra: dict[str, Any] | None = None) -> bytes:
    """A kombu envelope for ``echo:payload`` on Redis whose body is ``body`` (and headers
    ``extra`` besides), as a producer other than Celery might write it."""
    headers = {"lang": "py", "task": "echo:payload", "id": run_id, "root_id": run_id}
    headers.update(extra or {})
    properties = {
        "correlation_id": run_id,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": "default"},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
    }
    message = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    return json.dumps(message).encode()


def refused_then_next(broker: Broker, bad: str) -> TaskRun:
    """Queue a good run after the bad one, run a prefork worker: the bad run's row, once
    the worker, still alive, has run the good one."""
    plain = str(uuid.uuid4())
    broker.app.tasks["echo:payload"].apply_async(
        kwargs={"payload": {"after": 1}, "context": {}}, task_id=plain
    )
    worker = start_worker(broker, "poison", ("default",), pool="prefork")
    try:
        refused, ran = settled(bad), settled(plain)
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
    assert (ran.status, ran.result) == (RunStatus.SUCCEEDED, {"after": 1})
    assert refused.status == RunStatus.FAILED
    return refused


@pytest.mark.parametrize("body", [b'{"foo": 1}', b"[1, 2, 3]", b'"text"'])
def test_a_body_that_is_no_task_call_is_a_failed_run_and_the_worker_goes_on(
    broker: Broker, body: bytes
) -> None:
    bad = str(uuid.uuid4())
    client = redis.Redis.from_url(broker.url)
    try:
        client.lpush("default", envelope(bad, body))
    finally:
        client.close()
    refused = refused_then_next(broker, bad)
    assert "InvalidMessage: The message is not a Celery task call" in refused.error


def test_a_refused_message_whose_id_is_no_uuid_is_a_failed_run_under_an_id_made_of_it(
    broker: Broker,
) -> None:
    client = redis.Redis.from_url(broker.url)
    try:
        client.lpush("default", envelope("order-17", b"[1, 2, 3]"))
    finally:
        client.close()
    refused = refused_then_next(broker, item_id(b"order-17"))
    assert "InvalidMessage: The message is not a Celery task call" in refused.error


def test_a_payload_too_deep_to_pickle_is_a_failed_run_and_the_worker_goes_on(
    broker: Broker,
) -> None:
    deep = str(uuid.uuid4())
    # sent as Celery would send it, past taskkit's own checks at enqueue
    broker.app.tasks["echo:payload"].apply_async(
        kwargs={"payload": nested(5_000), "context": {}}, task_id=deep
    )
    refused = refused_then_next(broker, deep)
    assert "could not hand the message to a pool process (RecursionError" in refused.error


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"timelimit": ["abc", "x"]}, "are not seconds"),
        ({"timelimit": [-1, None]}, "are not seconds"),
        ({"eta": "9999-12-31T23:59:59-14:00"}, "no time this worker can wait for"),
        ({"task": {"a": 1}}, "TaskNotFound"),
        ({"id": {"a": 1}}, "is no string"),
    ],
)
def test_headers_celery_cannot_use_are_a_failed_run_and_the_worker_goes_on(
    broker: Broker, headers: dict[str, Any], error: str
) -> None:
    """Each took the worker's main process down, or was lost:

    - a prefork pool sets a run's timers there when a child takes it, and ``"x"`` raised;
    - Celery rejected an eta it cannot make a timestamp of, with a log line;
    - it looks the task name up among its tasks, and the id among the revoked runs, and a
      name or id that is no string raised ``TypeError``.
    """
    bad = str(uuid.uuid4())
    client = redis.Redis.from_url(broker.url)
    try:
        client.lpush("default", envelope(bad, b'[[], {"payload": {}, "context": {}}, {}]', headers))
    finally:
        client.close()
    refused = refused_then_next(broker, row_id(str(headers.get("id", bad))))
    assert error in refused.error


UNPARSABLE = [
    b"\x00\xffraw bytes, no JSON",
    b'{"foo": 1}',
    b"[1, 2, 3]",
    # an envelope without its delivery information: Celery restored the messages in flight
    json.dumps({"body": "", "headers": {}, "properties": {"delivery_tag": "x"}}).encode(),
    b'{"body": "not base64!", "content-type": "application/json", "properties": '
    b'{"body_encoding": "base64", "delivery_tag": "y", '
    b'"delivery_info": {"exchange": "", "routing_key": "default"}}}',
    # JSON, but kombu's decoder turns {"__type__": …} objects into Python values, and fails
    b'{"body": "", "headers": {"at": {"__type__": "datetime", "__value__": 5}}, "properties": '
    b'{"delivery_tag": "z", "delivery_info": {"exchange": "", "routing_key": "default"}}}',
]


def test_items_kombu_cannot_parse_go_to_the_quarantine_and_nothing_runs_twice(
    broker: Broker,
) -> None:
    key = f"poison:{uuid.uuid4()}"
    client = redis.Redis.from_url(broker.url)
    try:
        # a slow non-idempotent run is in flight while the bad items arrive
        handle = taskkit.enqueue("crash:plain", {"key": key, "seconds": 2})
        worker = start_worker(broker, "poison", ("default",), pool="prefork")
        try:
            recorded(key, 1, TIMEOUT)  # started
            for item in UNPARSABLE:
                client.lpush("default", item)
            plain = taskkit.enqueue("echo:payload", {"after": 2})
            ran = settled(plain.id)
            assert settled(handle.id).status == RunStatus.SUCCEEDED
            time.sleep(1)  # a restored message would have started again by now
            assert worker.poll() is None, "the worker died"
        finally:
            stop(worker)
        assert ran.status == RunStatus.SUCCEEDED
        assert [line.split()[:2] for line in recorded(key, 2)] == [
            ["start", handle.id],
            ["done", handle.id],
        ]
        assert client.lrange(QUARANTINE, 0, -1) == UNPARSABLE[::-1]  # byte for byte
        assert client.llen("default") == 0

        listed = queues.list(QUARANTINE)
        assert [message.raw for message in listed] == UNPARSABLE  # oldest first
        assert all(message.problem for message in listed)
        assert listed[0].problem.startswith("not JSON")
        assert QUARANTINE in [queue.name for queue in queues.details().queues]
        assert queues.delete_run(listed[0].run_id)
        assert client.lrange(QUARANTINE, 0, -1) == UNPARSABLE[:0:-1]
    finally:
        client.close()


#: Published to a worker's remote-control channel, each took the worker down.
UNREADABLE_BROADCASTS = [
    b"[1, 2, 3]",
    b'{"properties": {}}',
    b'{"a": {"__type__": "bytes", "__value__": 5}}',
]


def test_malformed_broadcasts_go_to_the_quarantine_and_the_worker_goes_on(
    broker: Broker,
) -> None:
    """Celery's remote control (``celery.pidbox``) and taskkit's broadcasts reach a Redis
    worker through Redis' publish: kombu parsed what came there as it popped list items."""
    client = redis.Redis.from_url(broker.url)
    worker = start_worker(broker, "poison", ("default",))
    try:
        settled(taskkit.enqueue("echo:payload", {"before": 1}).id)  # subscribed by now
        channel = f"/{client.connection_pool.connection_kwargs['db']}.celery.pidbox"
        assert [client.publish(channel, item) for item in UNREADABLE_BROADCASTS] == [1, 1, 1]
        ran = settled(taskkit.enqueue("echo:payload", {"after": 4}).id)
        assert worker.poll() is None, "the worker died"
        assert worker_pings(broker)  # its remote control still answers
    finally:
        stop(worker)
        quarantined = client.lrange(QUARANTINE, 0, -1)
        client.close()
    assert ran.status == RunStatus.SUCCEEDED
    assert quarantined == UNREADABLE_BROADCASTS[::-1]


def test_a_held_message_kombu_cannot_put_back_goes_to_the_quarantine_and_workers_start(
    broker: Broker,
) -> None:
    """kombu keeps each message a Redis worker holds in a hash, and a worker that starts puts
    back those held too long (their worker gone): an entry it could not parse took down
    every worker that started, and stayed there."""
    client = redis.Redis.from_url(broker.url)
    entries = {"bad-json": b"garbage", "bad-shape": b"[1, 2]"}
    for tag, entry in entries.items():
        client.hset("unacked", tag, entry)
        client.zadd("unacked_index", {tag: 0})  # held since 1970: due back
    worker = start_worker(broker, "poison", ("default",))
    try:
        ran = settled(taskkit.enqueue("echo:payload", {"after": 5}).id)
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
        quarantined = client.lrange(QUARANTINE, 0, -1)
        left = client.hkeys("unacked"), client.zrange("unacked_index", 0, -1)
        client.close()
    assert ran.status == RunStatus.SUCCEEDED
    assert sorted(quarantined) == sorted(entries.values())
    assert left == ([], [])


def worker_pings(broker: Broker) -> list[Any]:
    return broker.app.control.ping(timeout=2) or []


@pytest.fixture
def any_broker(private_url: str) -> Iterator[Broker]:
    with on_broker("reliability-poison", private_url) as broker:
        yield broker


def test_what_celery_would_drop_is_a_failed_run_or_in_the_quarantine(any_broker: Broker) -> None:
    """An unknown task's run (a web process deployed before its workers), a message that is
    no task call, and (on RabbitMQ, where kombu hands bodies on whole) a body that does not
    decode: Celery logged each and dropped it."""
    unknown = str(uuid.uuid4())
    with Connection(any_broker.url) as connection:
        producer = connection.Producer()
        send = functools.partial(
            producer.publish, exchange="", routing_key="default", declare=[Queue("default")]
        )
        body = [[], {"payload": {"n": 7}, "context": {"run_id": unknown}}, {}]
        send(body, serializer="json", headers={"task": "newer:task", "id": unknown})
        send({"hello": 1}, serializer="json", headers={"from": "elsewhere"})
        if any_broker.name == "rabbitmq":
            send(b"\x00 not json", content_type="application/json", content_encoding="utf-8")
        plain = str(uuid.uuid4())
        any_broker.app.tasks["echo:payload"].apply_async(
            kwargs={"payload": {"after": 3}, "context": {}}, task_id=plain
        )
        worker = start_worker(any_broker, "dropped", ("default",))
        try:
            assert settled(plain).status == RunStatus.SUCCEEDED
            row = settled(unknown)
            assert worker.poll() is None, "the worker died"
        finally:
            stop(worker)
        assert (row.name, row.status, row.payload) == ("newer:task", RunStatus.FAILED, {"n": 7})
        assert row.error == "TaskNotFound: Unknown task 'newer:task'."

        quarantined = Queue(QUARANTINE)(connection.default_channel)  # undecoded bodies
        problems = []
        while (message := quarantined.get()) is not None:
            problems.append(message.headers["taskkit-problem"])
            message.ack()
    expected = ["not a Celery task message: no task name in its headers"]
    if any_broker.name == "rabbitmq":
        expected.append("its body does not decode")
    assert [p[: len(e)] for p, e in zip(sorted(problems), sorted(expected), strict=True)] == sorted(
        expected
    )
