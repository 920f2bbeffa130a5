"""Runs a worker took from a queue but has not started: counted per queue, not lost from view.

A queue's length leaves out what the broker already handed to a worker
(prefetch); ``details()``, ``taskqueue details`` and the dashboard add it back
from the workers' heartbeats.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis

import taskkit
from taskkit import queues
from tests.apps.nested.tasks.echo.count import COUNTS_URL

from .conftest import Broker, start_worker, stop

pytestmark = pytest.mark.django_db(transaction=True)


def test_prefetched_runs_are_counted_per_queue(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"held-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TASKKIT_TEST_WORKER_LOST_AFTER", "4")  # a heartbeat a second
    key = f"held-{uuid.uuid4().hex}"
    slow = taskkit.enqueue("crash:plain", {"key": key, "seconds": 20}, queue=queue)
    quick = taskkit.enqueue_many("echo:payload", [{"n": n} for n in range(8)], queue=queue)
    process = start_worker(broker, "held", (queue,), pool="prefork")
    try:
        deadline = time.monotonic() + 60
        with redis.Redis.from_url(COUNTS_URL) as counts:  # closed: see test_cancel_running
            while not counts.lrange(key, 0, -1):
                assert time.monotonic() < deadline, "the slow run never started"
                time.sleep(0.2)
        # one process, busy: it holds up to 4 more (Celery's prefetch), the rest wait
        while (info := queues.info(queue)).reserved == 0:
            assert time.monotonic() < deadline, "no heartbeat counted the runs held"
            time.sleep(0.5)
        assert info.reserved + info.length == len(quick)
        assert 1 <= info.reserved <= 4
        shown = {q.name: q for q in queues.details().queues}[queue]
        assert shown.reserved == info.reserved
        assert slow.result(timeout=60) is None
        assert [h.result(timeout=60) for h in quick] == [{"n": n} for n in range(8)]
    finally:
        stop(process)
