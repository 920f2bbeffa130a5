"""Broker items no worker can take: what is wrong with each, and where they go."""

from __future__ import annotations

import base64
import json
import os
import queue
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import redis
from kombu import Connection

from taskkit import redis_transport
from taskkit.bridge.work import consumer
from taskkit.bridge.work.consumer import _payload
from taskkit.embedded import celery_settings
from taskkit.quarantine import (
    QUARANTINE,
    entry_problem,
    item_id,
    problem,
    read_file,
    unreadable,
)
from taskkit.queues.brokers.filesystem import FilesystemBroker
from taskkit.queues.brokers.redis import RedisBroker
from taskkit.queues.messages import decode

from .conftest import SCRATCH_REDIS_URL as REDIS

DELIVERY = {"exchange": "", "routing_key": "default"}


#: kombu's typed JSON values, malformed: its decoder raises on them.
BAD_DATE = {"__type__": "datetime", "__value__": 5}
BAD_UUID = {"__type__": "uuid", "__value__": "zz"}


@contextmanager
def embedded_broker(folder: Path) -> Iterator[Connection]:
    """A connection to an embedded broker in ``folder``, through taskkit's transport."""
    options = celery_settings(folder)["CELERY_BROKER_TRANSPORT_OPTIONS"]
    with Connection(
        "filesystem://", transport="taskkit.embedded:Transport", transport_options=options
    ) as connection:
        yield connection


def envelope(body: Any = "[[], {}, {}]", **properties: Any) -> dict[str, Any]:
    return {
        "body": body,
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {},
        "properties": {"delivery_tag": "t", "delivery_info": DELIVERY, **properties},
    }


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\x00\xff", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b'{"foo": 1}', "no properties with a delivery_tag"),
        (b"[1, 2, 3]", "a JSON list, not an object"),
        (json.dumps({"properties": {"delivery_tag": "t"}}).encode(), "no delivery_info"),
        (json.dumps({**envelope(), "headers": [1]}).encode(), "headers are not an object"),
        (json.dumps(envelope("!!", body_encoding="base64")).encode(), "not valid base64"),
        (json.dumps(envelope(7, body_encoding="base64")).encode(), "not a string"),
        (json.dumps(envelope("{nope")).encode(), "its body is not JSON"),
        (json.dumps(envelope(7)).encode(), "JSON body is not text"),
        # JSON to the standard library; kombu's decoder fails on its typed values
        (json.dumps({**envelope(), "headers": {"at": BAD_DATE}}).encode(), "not JSON (TypeError"),
        (json.dumps(envelope(json.dumps([[], {"at": BAD_UUID}, {}]))).encode(), "body is not JSON"),
        ('{"properties": "\u00e9"}'.encode("utf-16"), "not JSON (UnicodeDecodeError"),
    ],
)
def test_what_keeps_a_worker_from_an_item_is_named(raw: bytes, why: str) -> None:
    assert why in (problem(raw) or "")


def test_celerys_own_messages_have_no_problem() -> None:
    encoded = base64.b64encode(b'[[], {"payload": {}}, {}]').decode()
    assert problem(json.dumps(envelope(encoded, body_encoding="base64"))) is None
    other = {**envelope("x"), "content-type": "application/x-other"}  # Celery decodes or refuses
    assert problem(json.dumps(other)) is None
    typed = {"__type__": "datetime", "__value__": "2026-12-05T10:00:00+00:00"}  # kombu's own
    assert problem(json.dumps({**envelope(), "headers": {"at": typed}})) is None


def test_an_item_id_is_a_uuid_made_of_its_bytes() -> None:
    assert item_id(b"a") == item_id(b"a") != item_id(b"b")
    assert uuid.UUID(item_id(b"a"))


def test_a_redis_worker_moves_what_it_cannot_take_to_the_quarantine(
    scratch_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"q-{uuid.uuid4().hex[:8]}"
    with Connection(REDIS, transport=redis_transport.Transport) as connection:
        connection.SimpleQueue(name).put({"good": 1})  # declared; then garbage goes first
        typed = json.dumps({**envelope(), "headers": {"at": BAD_DATE}}).encode()
        scratch_redis.rpush(name, b"\x00garbage", typed)
        with connection.SimpleQueue(name) as simple:
            message = simple.get(timeout=5)  # BRPOP through the screened read
            assert message.payload == {"good": 1}
            message.ack()
    assert scratch_redis.lrange(QUARANTINE, 0, -1) == [b"\x00garbage", typed]
    assert f"a malformed item in queue {name} was moved to {QUARANTINE}" in caplog.text


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"garbage", "not JSON"),
        (b"[1, 2]", "no [envelope, exchange, routing key]"),
        (json.dumps([envelope(), {}, "default"]).encode(), "is no string"),
        (json.dumps([{"properties": {}}, "", "default"]).encode(), "no properties"),
        (json.dumps([{**envelope(), "headers": {"at": BAD_DATE}}, "", "q"]).encode(), "TypeError"),
    ],
)
def test_what_keeps_kombu_from_putting_back_a_held_message_is_named(raw: bytes, why: str) -> None:
    assert why in (entry_problem(raw) or "")
    assert entry_problem(json.dumps([envelope(), "", "default"])) is None


def test_a_redis_worker_quarantines_a_held_message_it_cannot_put_back(
    scratch_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"q-{uuid.uuid4().hex[:8]}"
    with Connection(REDIS, transport=redis_transport.Transport) as connection:
        simple = connection.SimpleQueue(name)
        qos: Any = connection.default_channel.qos  # type: ignore[attr-defined]
        scratch_redis.hset(qos.unacked_key, "bad", b"[1, 2]")
        scratch_redis.zadd(qos.unacked_index_key, {"bad": 0})  # held for ages: due back
        qos.restore_visible(num=10)
        assert scratch_redis.hlen(qos.unacked_key) == 0
        assert scratch_redis.zcard(qos.unacked_index_key) == 0
        simple.close()
    assert scratch_redis.lrange(QUARANTINE, 0, -1) == [b"[1, 2]"]
    assert "no [envelope, exchange, routing key]" in caplog.text


def test_redis_listings_show_malformed_items_with_their_problem(scratch_redis: redis.Redis) -> None:
    scratch_redis.rpush(QUARANTINE, b"[1, 2, 3]", b"\x00")
    with Connection(REDIS) as connection:
        listed = list(RedisBroker(connection).scan(QUARANTINE))
    assert [(m.raw, m.run_id, m.name) for m in listed] == [
        (b"\x00", item_id(b"\x00"), ""),
        (b"[1, 2, 3]", item_id(b"[1, 2, 3]"), ""),
    ]
    assert listed[0].problem.startswith("not JSON")
    assert listed[0].as_json()["problem"] == listed[0].problem
    assert listed[0].as_json()["raw"] == "\x00"


def test_listings_show_an_item_a_worker_would_quarantine_with_its_problem_at_once(
    scratch_redis: redis.Redis,
) -> None:
    """A task message the standard library reads, with a typed value kombu refuses."""
    headers = {"task": "echo:payload", "id": str(uuid.uuid4()), "eta": BAD_DATE}
    raw = json.dumps({**envelope(), "headers": headers}).encode()
    scratch_redis.rpush("default", raw)
    with Connection(REDIS) as connection:
        (listed,) = list(RedisBroker(connection).scan("default"))
    assert (listed.run_id, listed.name) == (item_id(raw), "")
    assert listed.problem.startswith("not JSON (TypeError"), listed.problem


def test_redis_urls_use_taskkits_transport() -> None:
    redis_transport.install()  # as the app's ready() did
    for url in (REDIS, "rediss://127.0.0.1:6380/0"):
        assert Connection(url).transport_cls == url.split(":")[0]
        assert Connection(url).get_transport_cls() is redis_transport.Transport


def test_the_embedded_broker_moves_a_file_it_cannot_take_to_the_quarantine(
    tmp_path: Path,
) -> None:
    with embedded_broker(tmp_path) as connection:
        name = f"q-{uuid.uuid4().hex[:8]}"  # kombu keeps declared exchanges per process
        simple = connection.SimpleQueue(name)
        (tmp_path / "queue" / f"00000000000000000000_0.{name}.msg").write_bytes(b"not json")
        typed = json.dumps({**envelope(), "headers": {"at": BAD_DATE}}).encode()
        (tmp_path / "queue" / f"00000000000000000000_1.{name}.msg").write_bytes(typed)
        simple.put({"good": 1})
        assert simple.get(timeout=1).payload == {"good": 1}
        with pytest.raises(queue.Empty):
            simple.get(timeout=0.2)
        moved = sorted((tmp_path / "queue").glob(f"*.{QUARANTINE}.msg"))
        assert [path.name for path in moved] == [
            f"00000000000000000000_{n}.{QUARANTINE}.msg" for n in (0, 1)
        ]
        assert [path.read_bytes() for path in moved] == [b"not json", typed]
        listed = FilesystemBroker(connection).scan(QUARANTINE)
        assert [(m.raw, m.problem[:8]) for m in listed] == [
            (b"not json", "not JSON"),
            (typed, "not JSON"),
        ]
        simple.close()


def test_the_embedded_broker_quarantines_what_it_cannot_read_and_lists_and_deletes_it(
    tmp_path: Path,
) -> None:
    """A directory named like a message (a file the worker may not read is the same case):
    it went to a hidden name before, and the worker's consumer restarted."""
    with embedded_broker(tmp_path) as connection:
        name = f"q-{uuid.uuid4().hex[:8]}"
        simple = connection.SimpleQueue(name)
        folder = tmp_path / "queue"
        odd = folder / f"00000000000000000000_0.{name}.msg"
        odd.mkdir()
        (odd / "inside").write_bytes(b"x")
        broker = FilesystemBroker(connection)
        (shown,) = broker.scan(name)
        assert (shown.raw, shown.problem) == (odd.name.encode(), "cannot be read: Is a directory")
        simple.put({"good": 1})
        assert simple.get(timeout=1).payload == {"good": 1}
        (listed,) = broker.scan(QUARANTINE)
        assert listed.problem == "cannot be read: Is a directory"
        assert listed.location == str(folder / f"00000000000000000000_0.{QUARANTINE}.msg")
        assert broker.purge(QUARANTINE) == 1
        assert [path.name for path in folder.iterdir() if not path.name.startswith(".")] == []
        simple.close()


def test_the_embedded_broker_reads_only_regular_files(tmp_path: Path) -> None:
    """A FIFO named like a message blocked its reader (a worker, a listing) for good; a
    symbolic link was followed wherever it pointed."""
    fifo = tmp_path / "fifo.msg"
    os.mkfifo(fifo)
    outcome: list[BaseException | bytes] = []

    def read() -> None:
        try:
            outcome.append(read_file(fifo))
        except OSError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # blocked: let it go, so that the test ends
        os.close(os.open(fifo, os.O_WRONLY))
    assert [unreadable(exc) for exc in outcome if isinstance(exc, OSError)] == [
        "cannot be read: not a regular file"
    ]

    with embedded_broker(tmp_path) as connection:
        name = f"q-{uuid.uuid4().hex[:8]}"
        simple = connection.SimpleQueue(name)
        simple.put({"elsewhere": 1})
        (elsewhere,) = (tmp_path / "queue").glob(f"*.{name}.msg")
        elsewhere = elsewhere.rename(tmp_path / "elsewhere")
        link = tmp_path / "queue" / f"00000000000000000000_0.{name}.msg"
        link.symlink_to(elsewhere)
        simple.put({"good": 1})
        assert simple.get(timeout=1).payload == {"good": 1}
        (listed,) = FilesystemBroker(connection).scan(QUARANTINE)
        assert listed.problem == "cannot be read: not a regular file"
        assert elsewhere.exists()
        simple.close()


def test_a_task_name_that_is_no_string_is_an_unknown_task() -> None:
    strategies = consumer.Strategies({"echo:payload": "its handler"})
    assert strategies["echo:payload"] == "its handler"
    for name in ({"a": 1}, ["x"], "other:task"):
        with pytest.raises(KeyError):  # Celery's consumer: a failed run (TaskNotFound)
            strategies[cast(Any, name)]


def test_workers_get_taskkits_consumer_unless_the_project_chose_one() -> None:
    default = SimpleNamespace(worker_consumer=consumer.CELERYS)
    consumer._use(conf=default)
    assert default.worker_consumer == "taskkit.bridge.work.consumer:Consumer"
    own = SimpleNamespace(worker_consumer="myproject.worker:Consumer")
    consumer._use(conf=own)
    assert own.worker_consumer == "myproject.worker:Consumer"


@pytest.mark.parametrize(
    ("body", "payload"),
    [
        ([[], {"payload": {"n": 1}, "context": {}}, {}], {"n": 1}),
        ([[], {"a": 1}, {}], {}),
        ({"foo": 1}, {}),
    ],
)
def test_an_unknown_tasks_payload_is_kept_for_its_retry(body: Any, payload: Any) -> None:
    assert _payload(body, None) == payload
    undecoded = SimpleNamespace(decode=lambda: body)
    assert _payload(None, undecoded) == payload


def test_a_header_the_consumer_wrote_says_what_is_wrong() -> None:
    raw = json.dumps({**envelope(), "headers": {"task": "x", "id": "1", "taskkit-problem": "why"}})
    message = decode(raw.encode(), QUARANTINE)
    assert (message.name, message.problem) == ("", "why")
