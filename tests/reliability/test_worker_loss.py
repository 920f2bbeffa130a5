"""A worker process killed with SIGKILL in the middle of a run.

An idempotent task (``acks_late``, rejected on worker loss) runs again and
completes; any other task's run is recorded as failed, never dropped in silence.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest
from celery import Celery

import taskkit
from taskkit.models import RunStatus
from tests.integration.conftest import start_worker, stop

from .conftest import PrivateRedis, on_broker, recorded, row_once

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
TIMEOUT = 60


@pytest.fixture
def app(private_redis: PrivateRedis) -> Iterator[Celery]:
    """A prefork worker (one pool process) on the private Redis, and its app made current."""
    with on_broker("reliability-loss", private_redis.url) as broker:
        worker = start_worker(broker, "loss", pool="prefork")
        try:
            yield broker.app
        finally:
            stop(worker)


def kill_the_run(name: str) -> tuple[str, str]:
    """Start a run of ``name``, SIGKILL its pool process mid-run; return the run id and key."""
    key = f"loss:{uuid.uuid4()}"
    handle = taskkit.enqueue(name, {"key": key, "seconds": 3})
    (started,) = recorded(key, 1, TIMEOUT)
    os.kill(int(started.split()[2]), signal.SIGKILL)
    return handle.id, key


def test_an_idempotent_run_runs_again_after_its_process_is_killed(app: Celery) -> None:
    run_id, key = kill_the_run("crash:idempotent")
    lines = recorded(key, 3, TIMEOUT)  # started, started again, done
    assert [line.split()[:2] for line in lines] == [
        ["start", run_id],
        ["start", run_id],
        ["done", run_id],
    ]
    assert lines[0].split()[2] != lines[1].split()[2]  # in a new pool process
    row_once(run_id, RunStatus.SUCCEEDED, timeout=TIMEOUT)


def test_another_run_is_recorded_as_lost(app: Celery) -> None:
    run_id, key = kill_the_run("crash:plain")
    row = row_once(run_id, RunStatus.FAILED, timeout=TIMEOUT)
    assert "WorkerLostError" in row.error
    time.sleep(1)
    assert [line.split()[0] for line in recorded(key, 1, TIMEOUT)] == ["start"]  # never run again
