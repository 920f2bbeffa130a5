"""kombu's ``global_keyprefix``: the queues are inspected and changed under the prefix.

kombu's client prefixes the keys of some commands and not of others; the
inspection once read ``LRANGE`` and ``SCAN`` without it, and saw empty queues
that held messages (while ``info`` counted them with ``LLEN``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

import taskkit
from taskkit import queues

from .conftest import SCRATCH_REDIS_URL
from .integration.conftest import current, make_app

pytestmark = pytest.mark.django_db(transaction=True)

PREFIX = "tenant-a:"


@pytest.fixture
def prefixed(scratch_redis: redis.Redis) -> Iterator[Celery]:
    """The project's app on the scratch Redis database, with a global key prefix."""
    app = make_app(
        "keyprefix", SCRATCH_REDIS_URL, broker_transport_options={"global_keyprefix": PREFIX}
    )
    with current(app):
        yield app
    app.close()


def test_queued_runs_are_listed_found_and_deleted_under_the_prefix(
    prefixed: Celery, scratch_redis: redis.Redis
) -> None:
    one = taskkit.enqueue("echo:payload", {"n": 1})
    many = taskkit.enqueue_many("echo:payload", [{"n": 2}, {"n": 3}, {"n": 3}])
    assert scratch_redis.llen(f"{PREFIX}default") == 4
    assert not scratch_redis.exists("default")  # nothing outside the prefix

    taskkit.enqueue("echo:payload", {"n": 4}, queue="declared-here")  # found by its binding
    lengths = {queue.name: queue.length for queue in queues.details().queues}
    assert (lengths["default"], lengths["declared-here"]) == (4, 1)
    assert queues.info("default").length == 4
    listed = [message.run_id for message in queues.list("default")]
    assert sorted(listed) == sorted([one.id, *(handle.id for handle in many)])
    assert len(queues.find("echo:payload", {"n": 3})["queued"]) == 2

    assert queues.delete_run(one.id)
    assert queues.delete("default", name="echo:payload", payload={"n": 3}) == 2
    assert scratch_redis.llen(f"{PREFIX}default") == 1
    assert [message.payload for message in queues.list("default")] == [{"n": 2}]


def test_held_messages_are_read_under_the_prefix(
    prefixed: Celery, scratch_redis: redis.Redis
) -> None:
    """A message a worker took waits in kombu's ``unacked`` hash, under the prefix too."""
    handle = taskkit.enqueue("echo:payload", {"n": 1})
    raw = scratch_redis.rpop(f"{PREFIX}default")
    assert isinstance(raw, bytes)
    scratch_redis.hset(f"{PREFIX}unacked", "tag-1", json.dumps([json.loads(raw), "", "default"]))
    held = queues.find("echo:payload")["held"]
    assert [message.run_id for message in held] == [handle.id]


def test_a_worker_runs_what_was_enqueued_under_the_prefix(
    prefixed: Celery, scratch_redis: redis.Redis
) -> None:
    """The whole way: both enqueue paths, a worker, and a poison item quarantined under it."""
    from taskkit.models import RunStatus, TaskRun
    from taskkit.quarantine import QUARANTINE

    from .integration.conftest import Broker, start_worker, stop
    from .reliability.conftest import row_once

    handles = [taskkit.enqueue("echo:payload", {"n": 1})]
    handles += taskkit.enqueue_many("echo:payload", [{"n": 2}])
    scratch_redis.lpush(f"{PREFIX}default", b"no JSON at all")
    options = {"broker_transport_options": {"global_keyprefix": PREFIX}}
    worker = start_worker(Broker("redis", SCRATCH_REDIS_URL, options, prefixed), "keyprefix")
    try:
        done = (RunStatus.SUCCEEDED, RunStatus.FAILED)
        rows = [row_once(handle.id, *done, timeout=30) for handle in handles]
    finally:
        stop(worker)
    assert [(row.status, row.result) for row in rows] == [
        (RunStatus.SUCCEEDED, {"n": 1}),
        (RunStatus.SUCCEEDED, {"n": 2}),
    ]
    assert [message.raw for message in queues.list(QUARANTINE)] == [b"no JSON at all"]
    assert TaskRun.objects.count() == 2
