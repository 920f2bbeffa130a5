"""A ``taskworker --queues '*'`` takes up a queue first named after it started, unrestarted.

Each broker is a private one (a ``redis-server`` of the test's, a RabbitMQ vhost
of its own), so the queue is new to it whatever other tests did.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

import taskkit
from taskkit.models import WorkerHeartbeat
from tests.integration.conftest import REPO, Broker, current, make_app, stop, worker_env

from .test_two_workers_one_host import MANAGE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
#: How long a new queue may take to be consumed and its run to finish (the worker reads
#: the known queues every 2 s).
TIMEOUT = 30


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A private broker, its app made current."""
    if request.param == "redis":
        url = request.getfixturevalue("private_redis").url
    else:
        url = f"amqp://guest:guest@127.0.0.1:5672/{request.getfixturevalue('rabbitmq_vhost')}"
    app = make_app(f"reliability-live-{request.param}", url)
    try:
        with current(app):
            yield Broker(request.param, url, {}, app)
    finally:
        app.close()


@pytest.fixture
def star_worker(broker: Broker) -> Iterator[subprocess.Popen[str]]:
    """``manage.py taskworker --queues '*'``, once it beats."""
    command = [
        sys.executable, "-c", MANAGE, "taskworker", "--queues", "*",
        "--pool", "threads", "--concurrency", "2", "--loglevel", "warning",
    ]  # fmt: skip
    env = {**worker_env(broker), "TASKKIT_TEST_WORKER_LOST_AFTER": "2"}  # a beat each 0.5 s
    process = subprocess.Popen(command, cwd=REPO, env=env, text=True, start_new_session=True)
    try:
        name = f"taskkit-{process.pid}@{socket.gethostname()}"
        deadline = time.monotonic() + TIMEOUT
        while not WorkerHeartbeat.objects.filter(name=name).exists():
            assert process.poll() is None, process.returncode
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
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
