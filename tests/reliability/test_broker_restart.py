"""Redis killed and restarted while 10,000 runs are enqueued: each one ran or its enqueue raised.

A ledger keeps every run id whose enqueue returned. After the outage a worker
runs the queue; every run counts itself once (``echo:count``). Nothing that
was enqueued may be lost, and nothing may run twice.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

import taskkit
from tests.integration.conftest import start_worker, stop

from .conftest import PrivateRedis, counted, forget, on_broker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
RUNS = 10_000


def test_redis_restart_while_enqueueing_loses_nothing(private_redis: PrivateRedis) -> None:
    key = f"counts:{uuid.uuid4()}"
    sent: list[str] = []
    raised = 0

    def outage() -> None:
        private_redis.kill()
        time.sleep(1.0)
        private_redis.start()

    cut = threading.Timer(0, outage)
    began = time.monotonic()
    with on_broker("reliability-redis", private_redis.url) as broker:
        for i in range(RUNS):
            if i == RUNS // 3:
                cut.start()
            try:
                sent.append(taskkit.enqueue("echo:count", {"key": key, "i": i}).id)
            except taskkit.BrokerUnavailable:
                raised += 1
        cut.join()
        enqueued = time.monotonic()
        # The fault is over: the drain needs no fsync per write (each worker read is several)
        server = redis.Redis.from_url(private_redis.url)
        server.config_set("appendfsync", "everysec")
        server.close()
        worker = start_worker(broker, "reliability", measured=False)
        try:
            ran = counted(key, len(sent), 300)
        finally:
            stop(worker)
            forget(key)
    lost = set(sent) - set(ran)
    print(f"enqueued {len(sent)}, raised {raised}, ran {len(set(ran))}, lost {len(lost)}, "
          f"duplicated {len(ran) - len(set(ran))}; enqueues {enqueued - began:.0f} s, "
          f"drain {time.monotonic() - enqueued:.0f} s")  # fmt: skip
    assert raised > 0, "the outage was not seen: the test proves nothing"
    assert not lost, f"{len(lost)} enqueued runs never ran"
    assert len(ran) == len(set(ran)), "a run ran twice"
    assert len(ran) <= len(sent) + raised  # a raised enqueue may still have landed
