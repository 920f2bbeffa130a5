"""The Redis fast path writes what ``apply_async`` would, on a real Redis.

Nothing consumes these queues (the scratch Redis database, ``tests.conftest``): the
tests read the envelopes back and compare them with the ones Celery's ``apply_async``
writes for the same runs, byte for byte but for kombu's delivery tags.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import redis
from celery import Celery, _state
from celery.signals import before_task_publish
from django.test import override_settings
from kombu import Queue

import taskkit
from taskkit.bridge.send import redis_batch
from taskkit.bridge.send.celery_message import apply, message_options
from taskkit.bridge.send.messages import Prepared, new_ids, prepare
from taskkit.bridge.send.publish import publish
from taskkit.registry import get_task

from .conftest import SCRATCH_REDIS_URL as URL
from .integration.conftest import current, make_app


@pytest.fixture
def app(scratch_redis: redis.Redis) -> Iterator[Celery]:
    app = make_app("taskkit-redis-batch", URL)
    with current(app):
        yield app
    app.close()


def queued(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The queue's envelopes, oldest first (the order a worker takes them), without delivery
    tags (checked to be UUIDs)."""
    envelopes = [json.loads(raw) for raw in reversed(client.lrange(queue, 0, -1))]
    for envelope in envelopes:
        assert uuid.UUID(envelope["properties"].pop("delivery_tag")).version == 4
    client.delete(queue)
    return envelopes


def runs(name: str, count: int, queue: str | None = None) -> list[Prepared]:
    task = get_task(name)
    return [prepare(task, {"n": n, "text": "é\n"}, queue or task.meta.queue) for n in range(count)]


def one_by_one(batch: list[Prepared]) -> None:
    """Celery's own path: ``apply_async`` for each run."""
    app = _state.get_current_app()
    with app.producer_or_acquire() as producer:
        for run in batch:
            apply(app, producer, run, message_options(run))


@pytest.mark.parametrize(
    ("name", "queue"),
    [
        ("echo:payload", None),
        ("echo:payload", "special"),
        ("db:migrate", None),
        ("limits:sleep", None),
    ],
)
def test_envelopes_equal_apply_async(
    app: Celery, scratch_redis: redis.Redis, name: str, queue: str | None
) -> None:
    batch = runs(name, 5, queue)
    assert redis_batch.usable(app, app.producer_pool.acquire(), batch)
    publish(batch)
    target = batch[0].queue
    fast = queued(scratch_redis, target)
    one_by_one(batch)
    assert fast == queued(scratch_redis, target)
    assert [envelope["headers"]["id"] for envelope in fast] == [run.run_id for run in batch]
    if name == "limits:sleep":
        assert fast[0]["headers"]["timelimit"] == [7.0, 2.0]


def test_project_routes_are_honoured(scratch_redis: redis.Redis) -> None:
    app = make_app("taskkit-redis-routes", URL, task_routes={"echo:payload": {"queue": "special"}})
    with current(app):
        batch = runs(
            "echo:payload",
            3,
            taskkit.bridge.send.celery_message.resolve_queue(get_task("echo:payload"), None),
        )
        publish(batch)
        fast = queued(scratch_redis, "special")
        one_by_one(batch)
        assert fast == queued(scratch_redis, "special")
        assert len(fast) == 3 and not scratch_redis.exists("default")
    app.close()


def test_parent_and_root_ids_are_those_of_the_running_task(
    app: Celery, scratch_redis: redis.Redis
) -> None:
    parent = app.tasks["echo:payload"]
    parent.push_request(id="parent-id", root_id="root-id", called_directly=False)
    task_stack = cast(Any, _state)._task_stack  # what a worker pushes while a task runs
    task_stack.push(parent)
    try:
        batch = runs("echo:payload", 3)
        publish(batch)
        fast = queued(scratch_redis, "default")
        one_by_one(batch)
        assert fast == queued(scratch_redis, "default")
        assert parent.request.children  # both paths add the runs to the parent's trail
    finally:
        task_stack.pop()
        parent.pop_request()
    assert {(e["headers"]["parent_id"], e["headers"]["root_id"]) for e in fast} == {
        ("parent-id", "root-id")
    }


def test_large_batches_are_chunked_and_keep_their_order(
    app: Celery, scratch_redis: redis.Redis
) -> None:
    queue = f"bulk-{uuid.uuid4().hex}"  # never declared before in this process
    batch = runs("echo:payload", 2_500, queue)
    publish(batch)
    fast = queued(scratch_redis, queue)
    assert [e["headers"]["id"] for e in fast] == [run.run_id for run in batch]
    assert scratch_redis.exists(f"_kombu.binding.{queue}")  # the queue was declared


def test_publish_signal_receivers_see_every_message(
    app: Celery, scratch_redis: redis.Redis
) -> None:
    seen: list[str] = []

    def spy(headers: dict[str, Any], **kwargs: Any) -> None:
        seen.append(headers["id"])

    batch = runs("echo:payload", 4)
    before_task_publish.connect(spy, weak=False)
    try:
        assert not redis_batch.usable(app, app.producer_pool.acquire(), batch)
        publish(batch)
    finally:
        before_task_publish.disconnect(spy)
    assert seen == [run.run_id for run in batch]
    assert len(queued(scratch_redis, "default")) == 4


def test_what_the_copy_would_not_reproduce_takes_celerys_path(
    app: Celery, scratch_redis: redis.Redis
) -> None:
    producer = app.producer_pool.acquire()
    assert not redis_batch.usable(app, producer, runs("broadcast:ping", 2))
    mixed = runs("echo:payload", 1) + runs("echo:payload", 1, "special")
    assert not redis_batch.usable(app, producer, mixed)
    app.conf.task_default_priority = 5
    batch = runs("echo:payload", 3)
    options = [{"queue": run.queue, "argsrepr": "()", "kwargsrepr": ""} for run in batch]
    assert not redis_batch.publish(app, producer, batch, options)
    assert not scratch_redis.exists("default")  # nothing was sent by the refused fast path
    publish(batch)
    # sent one by one, into the list kombu keeps for that priority (steps 0, 3, 6, 9)
    envelopes = [json.loads(raw) for raw in scratch_redis.lrange("default\x06\x163", 0, -1)]
    assert [e["properties"]["priority"] for e in envelopes] == [5, 5, 5]


def test_queues_that_expire_take_celerys_path(scratch_redis: redis.Redis) -> None:
    app = make_app("taskkit-redis-expires", URL, task_queues=[Queue("expiring", expires=60)])
    with current(app):
        publish(runs("echo:payload", 3, "expiring"))
        assert scratch_redis.llen("expiring") == 3
        # kombu's PEXPIRE, which the copy leaves out
        assert 0 < scratch_redis.pttl("expiring") <= 60_000
    app.close()


@pytest.mark.django_db(transaction=True)
def test_redis_failing_mid_batch_is_a_clear_error(
    app: Celery, scratch_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        raise redis.ConnectionError("connection reset by peer")

    monkeypatch.setattr(redis.client.Pipeline, "execute", refuse)
    with pytest.raises(taskkit.BrokerUnavailable, match="connection reset by peer"):
        taskkit.enqueue_many("echo:payload", [{"a": 1}, {"a": 2}])


def test_a_single_run_takes_the_fast_path_with_a_kept_shape(
    app: Celery, scratch_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = runs("echo:payload", 2)
    assert redis_batch.usable(app, app.producer_pool.acquire(), [first])
    publish([first])  # builds the shape: Celery's apply_async, recorded, not sent
    built: list[str] = []
    monkeypatch.setattr(redis_batch, "apply", lambda *a, **k: built.append("apply"))
    publish([second])
    assert built == []  # the kept shape, no Celery work
    fast = queued(scratch_redis, "default")
    monkeypatch.undo()
    one_by_one([first, second])
    assert fast == queued(scratch_redis, "default")
    assert [e["headers"]["id"] for e in fast] == [first.run_id, second.run_id]


def test_a_changed_setting_or_another_process_builds_the_shape_again(
    app: Celery, scratch_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(runs("echo:payload", 1))
    with app.producer_or_acquire() as producer:
        run = runs("echo:payload", 1)[0]
        kept = redis_batch.shape_for(app, producer, run, message_options(run))
        assert redis_batch.shape_for(app, producer, run, message_options(run)) is kept
        with override_settings(CELERY_TASK_ALWAYS_EAGER=True):  # Celery reads it from Django
            assert redis_batch.shape_for(app, producer, run, message_options(run)) is None
        fresh = redis_batch.shape_for(app, producer, run, message_options(run))
        assert fresh is not None and fresh is not kept
        monkeypatch.setattr(os, "getpid", lambda: -1)  # a forked child: ids of its own
        assert redis_batch.shape_for(app, producer, run, message_options(run)) is not fresh


def test_stored_runs_of_one_batch_keep_their_own_contexts(
    app: Celery, scratch_redis: redis.Redis
) -> None:
    """The scheduler publishes due runs together; each has its own attempt and due time."""
    task = get_task("echo:payload")
    when = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    batch = [
        prepare(
            task,
            {"n": n},
            "default",
            attempt=1 + n % 2,
            scheduled_time=when + timedelta(seconds=n % 2),
            stored=n < 4,
            enqueued_at=when,
        )
        for n in range(6)
    ]
    publish(batch)
    fast = queued(scratch_redis, "default")
    one_by_one(batch)
    assert fast == queued(scratch_redis, "default")
    bodies = [json.loads(base64.b64decode(e["body"])) for e in fast]
    assert [body[1]["context"]["attempt"] for body in bodies] == [1, 2, 1, 2, 1, 2]
    assert [body[1]["context"].get("stored", False) for body in bodies] == [True] * 4 + [False] * 2


def test_a_single_run_inside_a_running_task_takes_celerys_path(app: Celery) -> None:
    parent = app.tasks["echo:payload"]
    parent.push_request(id="parent-id", root_id="root-id", called_directly=False)
    task_stack = cast(Any, _state)._task_stack
    task_stack.push(parent)
    try:
        assert not redis_batch.usable(app, app.producer_pool.acquire(), runs("echo:payload", 1))
        assert redis_batch.usable(app, app.producer_pool.acquire(), runs("echo:payload", 2))
    finally:
        task_stack.pop()
        parent.pop_request()


def test_new_ids_are_random_version_4_uuids() -> None:
    ids = new_ids(2_000)
    assert len(set(ids)) == 2_000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
