"""One test per private upstream name in :mod:`taskkit.upstream`: each fails when upstream renames it.

They test what taskkit relies on (a pool rebuilt, a message augmented, a row
loaded), not merely that an attribute exists, so a name kept but no longer read
by upstream fails too.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery, current_app
from django.db.models import Q
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from kombu import Connection, Exchange, Producer, Queue
from kombu.transport import filesystem

from taskkit import upstream
from taskkit.embedded import celery_settings
from taskkit.scheduler import Scheduler

from .conftest import SCRATCH_REDIS_URL as REDIS


@pytest.fixture
def channel(scratch_redis: redis.Redis) -> Iterator[Any]:
    with Connection(REDIS) as connection:
        yield connection.default_channel


def test_current_object_is_the_app_behind_the_proxy() -> None:
    app = Celery("upstream-test", set_as_current=False)
    previous = upstream.current_object(current_app)
    app.set_current()
    try:
        assert upstream.current_object(current_app) is app
    finally:
        previous.set_current()


def test_dropping_the_pools_makes_new_ones() -> None:
    app = Celery("upstream-test", broker="memory://", set_as_current=False)
    pool, producers = app.pool, app.amqp.producer_pool
    app.conf.broker_transport_options = {"confirm_publish": True}
    assert app.pool is pool  # kept until dropped
    upstream.drop_connection_pools(app)
    assert app.pool is not pool
    assert app.amqp.producer_pool is not producers


def test_a_queue_declared_with_x_expires_is_seen(channel: Any) -> None:
    name = f"expiring-{uuid.uuid4().hex}"
    Queue(name, queue_arguments={"x-expires": 60_000})(channel).declare()
    Queue("plain")(channel).declare()
    assert upstream.declared_with_expiry(channel, name)
    assert not upstream.declared_with_expiry(channel, "plain")


def test_augmenting_adds_kombus_delivery_info(channel: Any) -> None:
    message = channel.prepare_message(b"{}", 0, "application/json", "utf-8", {}, {})
    upstream.augment_message(channel, message, "default")
    assert message["properties"]["delivery_info"]["routing_key"] == "default"
    assert message["properties"]["delivery_tag"]


def test_priority_queue_names_the_list_kombu_publishes_to(
    channel: Any, scratch_redis: redis.Redis
) -> None:
    name = f"prio-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name), routing_key=name)
    Producer(channel).publish(
        {}, exchange=queue.exchange, routing_key=name, declare=[queue], priority=3
    )
    assert scratch_redis.llen(upstream.priority_queue(channel, name, 3)) == 1
    assert upstream.priority_queue(channel, name, 0) == name


def test_redis_key_prefix_is_the_prefix_kombus_client_writes_under(
    channel: Any, scratch_redis: redis.Redis
) -> None:
    assert upstream.redis_key_prefix(channel) == ""
    options = {"global_keyprefix": "pre:"}
    with Connection(REDIS, transport_options=options) as connection:
        prefixed: Any = connection.default_channel
        prefixed.client.lpush("listed", b"x")
        assert upstream.redis_key_prefix(prefixed) == "pre:"
    assert scratch_redis.llen("pre:listed") == 1


def test_the_filesystem_channel_writes_through_put_message(tmp_path: Path) -> None:
    options = celery_settings(tmp_path)["CELERY_BROKER_TRANSPORT_OPTIONS"]
    with Connection(
        "filesystem://", transport="taskkit.embedded:Transport", transport_options=options
    ) as connection:
        queue = f"upstream-{uuid.uuid4().hex}"
        connection.SimpleQueue(queue).put({"a": 1})
    (written,) = (tmp_path / "queue").glob(f"*.{queue}.msg")
    assert re.fullmatch(rf"\d{{20}}_\d{{12}}_[0-9a-f-]{{36}}\.{queue}\.msg", written.name)
    assert json.loads(written.read_text())["body"]


def test_a_connection_to_the_embedded_broker_does_not_warn_of_a_missing_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """kombu's ``Connection`` warns when a URL names no host and the transport's
    ``default_connection_params`` has one; a folder has none, so every start of a
    demo worker printed "No hostname was supplied" three times."""
    options = celery_settings(tmp_path)["CELERY_BROKER_TRANSPORT_OPTIONS"]
    with (
        caplog.at_level("WARNING", logger="kombu.connection"),
        Connection(
            "filesystem://", transport="taskkit.embedded:Transport", transport_options=options
        ) as connection,
    ):
        simple = connection.SimpleQueue(f"upstream-{uuid.uuid4().hex}")
        simple.put({"a": 1})
        assert simple.get(timeout=1).payload == {"a": 1}
        simple.close()
        assert connection.info()["hostname"] is None
    assert [record.getMessage() for record in caplog.records] == []


def _interval_row(name: str) -> PeriodicTask:
    every, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    return PeriodicTask(name=name, task="echo:payload", interval=every)


@pytest.mark.django_db
def test_beat_asks_crontab_exclude_query() -> None:
    asked: list[bool] = []

    class Asking(Scheduler):
        def crontab_exclude_query(self) -> Q:
            asked.append(True)
            return super().crontab_exclude_query()

    Asking(app=current_app, lazy=True).all_as_schedule()
    assert asked


@pytest.mark.django_db(transaction=True)
def test_heap_and_when_are_beats() -> None:
    _interval_row("upstream heap").save()
    scheduler = Scheduler(app=current_app, lazy=True)
    scheduler.populate_heap()
    assert "upstream heap" in {event[2].name for event in scheduler.heap}
    scheduler.heap = []
    assert scheduler.heap == []
    assert abs(scheduler.when(next(iter(scheduler.schedule.values())), 0) - time.time()) < 5


@pytest.mark.django_db(transaction=True)
def test_reread_schedule_reads_rows_no_change_signal_announced() -> None:
    scheduler = Scheduler(app=current_app, lazy=True)
    assert "upstream quiet" not in scheduler.schedule
    PeriodicTask.objects.bulk_create([_interval_row("upstream quiet")])  # sends no signal
    assert "upstream quiet" not in scheduler.schedule
    scheduler.reread_schedule()
    assert "upstream quiet" in scheduler.schedule


@pytest.mark.django_db
def test_count_sent_makes_beat_save_after_sync_every_tasks() -> None:
    scheduler = Scheduler(app=current_app, lazy=True)
    scheduler._last_sync = time.monotonic()  # just saved; sync_every (3 min) is far
    assert not scheduler.should_sync()
    scheduler.count_sent()
    assert scheduler.should_sync()


def screening_transport(screened: list[tuple[bytes, bytes]]) -> Any:
    """kombu's Redis transport with taskkit's read hooks, whose screen notes each ``(key,
    item)`` it is shown in ``screened`` and refuses ``b"refused"`` (kombu cannot parse it)."""
    from kombu.transport import redis as kombu_redis

    class Screening(upstream.RedisReadHooks, kombu_redis.Channel):
        def screen(self, key: bytes, item: bytes) -> bool:
            screened.append((key, item))
            return item != b"refused"

    class Transport(kombu_redis.Transport):
        Channel = Screening

    return Transport


def test_redis_read_hooks_screen_each_popped_item_before_kombu_parses_it(
    scratch_redis: redis.Redis,
) -> None:
    screened: list[tuple[bytes, bytes]] = []
    with Connection(REDIS, transport=screening_transport(screened)) as connection:
        simple = connection.SimpleQueue("upstream-hooks")
        scratch_redis.rpush("upstream-hooks", b"refused")  # would break kombu's parse
        simple.put({"a": 1})
        message = simple.get(timeout=5)
        assert message.payload == {"a": 1}
        message.ack()  # kombu puts back what is unacknowledged at close, on a socket it leaks
        simple.close()
    assert screened[0][1] == b"refused" and len(screened) == 2


def test_redis_read_hooks_screen_each_published_message_before_kombu_parses_it(
    scratch_redis: redis.Redis,
) -> None:
    screened: list[tuple[bytes, bytes]] = []
    name = f"upstream-fanout-{uuid.uuid4().hex[:8]}"
    exchange = Exchange(name, type="fanout")
    received: list[Any] = []

    def take(body: Any, message: Any) -> None:
        received.append(body)
        message.ack()  # kombu puts back what is unacknowledged at close, on a socket it leaks

    with Connection(REDIS, transport=screening_transport(screened)) as connection:
        queue = Queue(f"{name}-queue", exchange, auto_delete=True)
        with connection.Consumer(queue, callbacks=[take]):
            topic = f"/{connection.virtual_host}.{name}"  # kombu's channel for the exchange
            deadline = time.monotonic() + 5
            while not scratch_redis.publish(topic, b"refused") and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError, OSError):
                    connection.drain_events(timeout=0.1)  # subscribes on the first poll
            Producer(connection.default_channel).publish({"a": 1}, exchange=exchange)
            while not received and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError, OSError):
                    connection.drain_events(timeout=0.5)
    assert received == [{"a": 1}]
    assert screened[0] == (topic.encode(), b"refused") and len(screened) == 2


def test_redis_restore_hooks_screen_each_unacknowledged_entry_before_kombu_parses_it(
    scratch_redis: redis.Redis,
) -> None:
    from kombu.transport import redis as kombu_redis

    screened: list[bytes] = []

    class Screening(upstream.RedisRestoreHooks, kombu_redis.QoS):
        def screen_entry(self, client: Any, entry: bytes) -> bool:
            screened.append(entry)
            return entry != b"refused"

    class Restoring(kombu_redis.Channel):
        QoS = Screening

    class Transport(kombu_redis.Transport):
        Channel = Restoring

    name = f"upstream-restore-{uuid.uuid4().hex[:8]}"
    with Connection(REDIS, transport=Transport) as connection:
        simple = connection.SimpleQueue(name)
        simple.put({"a": 1})
        held = simple.get(timeout=5)  # held: its entry is in kombu's unacknowledged hash
        qos: Any = connection.default_channel.qos  # type: ignore[attr-defined]
        scratch_redis.hset(qos.unacked_key, "bad", b"refused")  # would break kombu's parse
        scratch_redis.zadd(qos.unacked_index_key, {"bad": 0})
        qos.restore_by_tag("bad")
        qos.restore_by_tag(held.delivery_tag)
        again = simple.get(timeout=5)  # put back
        assert again.payload == {"a": 1}
        again.ack()
        assert not scratch_redis.hexists(qos.unacked_key, "bad")
        assert scratch_redis.zscore(qos.unacked_index_key, "bad") is None
        simple.close()
    assert screened[0] == b"refused" and len(screened) == 2


def test_use_transport_forgets_the_class_kombu_resolved_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kombu.transport import TRANSPORT_ALIASES

    monkeypatch.setitem(TRANSPORT_ALIASES, "upstream-test", "kombu.transport.memory:Transport")
    assert Connection("upstream-test://").get_transport_cls().__module__ == "kombu.transport.memory"
    upstream.use_transport("upstream-test", "taskkit.embedded:Transport")
    assert Connection("upstream-test://").get_transport_cls().__module__ == "taskkit.embedded"


def test_the_filesystem_channel_reads_through_take_message(tmp_path: Path) -> None:
    taken: list[str] = []

    class Taking(upstream.FilesystemChannel):
        def take_message(self, queue: str) -> Any:
            taken.append(queue)
            return super().take_message(queue)

    class Transport(filesystem.Transport):
        Channel = Taking

    options = celery_settings(tmp_path)["CELERY_BROKER_TRANSPORT_OPTIONS"]
    with Connection("filesystem://", transport=Transport, transport_options=options) as connection:
        simple = connection.SimpleQueue("upstream-take")
        simple.put({"a": 1})
        assert simple.get(timeout=1).payload == {"a": 1}
        simple.close()
    assert "upstream-take" in taken


def test_a_pool_process_hit_by_a_terminate_signal_is_seen_exiting() -> None:
    """billiard's terminate handler (what a prefork child gets) raises ``SystemExit`` in the
    running code after marking the process; a task's own ``SystemExit`` leaves no mark."""
    script = """
import os, signal
from billiard import common
from taskkit import upstream
try:
    raise SystemExit(1)  # a task's own
except SystemExit:
    print("own", upstream.pool_process_exiting())
common.reset_signals()
try:
    os.kill(os.getpid(), signal.SIGTERM)
    signal.pause()
except SystemExit as exc:
    print("terminated", upstream.pool_process_exiting(), exc.code)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split("\n")[:2] == ["own False", "terminated True -241"]
