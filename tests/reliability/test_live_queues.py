"""A ``taskworker --queues '*'`` takes up a queue first named after it started, unrestarted.

Each broker is a private one (a ``redis-server`` of the test's, a RabbitMQ vhost
of its own), so the queue is new to it whatever other tests did.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

import taskkit
from taskkit.models import WorkerHeartbeat
from tests.integration.conftest import Broker, stop, worker_env

from .conftest import on_broker
from .processes import alive_until, start_taskworker, taskworker_name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
#: How long a new queue may take to be consumed and its run to finish (the worker reads
#: the known queues every 2 s).
TIMEOUT = 30


@pytest.fixture
def broker(private_url: str) -> Iterator[Broker]:
    """A private broker, its app made current."""
    with on_broker("reliability-live", private_url) as broker:
        yield broker


@pytest.fixture
def star_worker(broker: Broker) -> Iterator[subprocess.Popen[str]]:
    """``manage.py taskworker --queues '*'``, once it beats."""
    env = {**worker_env(broker), "TASKKIT_TEST_WORKER_LOST_AFTER": "2"}  # a beat each 0.5 s
    process = start_taskworker(env, "--queues", "*", "--pool", "threads", "--concurrency", "2")
    try:
        beats = WorkerHeartbeat.objects.filter(name=taskworker_name(process))
        alive_until([process], beats.exists, TIMEOUT, lambda: "the worker did not start")
        yield process
    finally:
        stop(process)


def test_a_queue_named_after_the_start_is_consumed(star_worker: subprocess.Popen[str]) -> None:
    queue = f"live-{uuid.uuid4().hex[:8]}"
    handle = taskkit.enqueue("echo:payload", {"fresh": queue}, queue=queue)
    assert handle.result(timeout=TIMEOUT) == {"fresh": queue}
    assert handle.run().queue == queue
    assert star_worker.poll() is None  # the same worker, never restarted
    # its heartbeat lists the queue too (the worker list shows it)
    deadline = time.monotonic() + TIMEOUT
    while queue not in WorkerHeartbeat.objects.get(name=handle.run().worker).queues:
        assert time.monotonic() < deadline, WorkerHeartbeat.objects.get().queues
        time.sleep(0.1)
