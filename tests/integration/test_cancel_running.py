"""An operator stops a running run: Celery's revoke with terminate, recorded as cancelled."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from io import StringIO

import pytest
import redis
from django.core.management import call_command

import taskkit
from taskkit import queues
from taskkit.exceptions import RunNotFound
from taskkit.models import RunStatus, TaskRun
from tests.apps.nested.tasks.echo.count import COUNTS_URL

from .conftest import Broker, start_worker, stop

pytestmark = pytest.mark.django_db(transaction=True)
QUEUE = "cancel-running"


@pytest.fixture(params=["prefork", "threads"])
def pool(request: pytest.FixtureRequest, broker: Broker) -> Iterator[str]:
    process = start_worker(broker, f"cancel-{request.param}", (QUEUE,), pool=request.param)
    try:
        yield str(request.param)
    finally:
        stop(process)


def entries(key: str) -> list[bytes]:
    """What the crash task pushed to ``key``, on a client closed at once (an unclosed
    socket's warning would fail whichever test the garbage collector meets it in)."""
    with redis.Redis.from_url(COUNTS_URL) as client:
        found: list[bytes] = client.lrange(key, 0, -1)
    return found


def started(key: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not entries(key):
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.1)


def test_stop_a_running_run(broker: Broker, pool: str) -> None:
    key = f"cancel-{uuid.uuid4().hex}"
    seconds = 30 if pool == "prefork" else 8  # a thread runs to its end
    handle = taskkit.enqueue("crash:plain", {"key": key, "seconds": seconds}, queue=QUEUE)
    started(key)
    deadline = time.monotonic() + 10  # the running row is written in a batch
    while not TaskRun.objects.filter(pk=handle.id, status=RunStatus.RUNNING).exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    out = StringIO()
    call_command("taskqueue", "stop-run", str(handle.id), "--dry-run", stdout=out)
    assert f"Would stop run {handle.id}." in out.getvalue()
    if pool == "prefork":  # the pool process running it is killed
        call_command("taskqueue", "stop-run", str(handle.id), "--noinput", stdout=out)
        assert f"Stopped run {handle.id}: it is cancelled." in out.getvalue()
        run = TaskRun.objects.get(pk=handle.id)
        assert run.status == RunStatus.CANCELLED
        assert run.error == "Terminated while running." and run.finished_at is not None
        assert entries(key)[-1].startswith(b"start")  # it never got to its end
        after = taskkit.enqueue("echo:payload", {"after": True}, queue=QUEUE)
        assert after.result(timeout=60) == {"after": True}  # the worker goes on
    else:  # a thread cannot be stopped: said so, and the run is left running
        assert not queues.cancel_running(handle.id, wait=3)
        assert TaskRun.objects.get(pk=handle.id).status == RunStatus.RUNNING
    with pytest.raises(RunNotFound):
        queues.cancel_running(uuid.uuid4())
