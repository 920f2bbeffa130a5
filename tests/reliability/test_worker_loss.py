"""A worker process killed with SIGKILL in the middle of a run.

An idempotent task (``acks_late``, rejected on worker loss) runs again and
completes; any other task's run is recorded as failed, never dropped in silence.
An idempotent run that kills every process it starts in is failed after
``MAX_STARTS`` starts, where Celery would put its message back for ever.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

import taskkit
from taskkit.bridge.work.delivery import MAX_STARTS
from taskkit.models import RunStatus
from tests.integration.conftest import (
    BROKERS,
    TESTED,
    purge,
    start_worker,
    stop,
    transport_settings,
)

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


@pytest.fixture(params=TESTED)
def any_broker(
    request: pytest.FixtureRequest, private_redis: PrivateRedis, tmp_path: Path
) -> Iterator[Celery]:
    """A prefork worker (one pool process) on each broker, and its app made current."""
    name: str = request.param
    url = private_redis.url if name == "redis" else BROKERS[name]
    with on_broker(f"reliability-loss-{name}", url, **transport_settings(name, tmp_path)) as broker:
        assert broker.name == name
        purge(broker.app)
        worker = start_worker(broker, "loss", pool="prefork")
        try:
            yield broker.app
        finally:
            stop(worker)


def poison(seconds: float, starts: int) -> None:
    """Run a task that kills its process ``seconds`` into each start: it is failed after
    ``starts`` starts, and the worker goes on to the next run."""
    key = f"poison:{uuid.uuid4()}"
    run_id = taskkit.enqueue("crash:poison", {"key": key, "seconds": seconds}).id
    row = row_once(run_id, RunStatus.FAILED, timeout=TIMEOUT)
    assert f"WorkerLost: its worker was lost during each of its {MAX_STARTS} starts" in row.error
    assert row.history[-1]["exception"] == "taskkit.exceptions.WorkerLost"
    then_key = f"{key}:then"
    then_id = taskkit.enqueue("crash:idempotent", {"key": then_key, "seconds": 0}).id
    assert [line.split()[0] for line in recorded(then_key, 2, TIMEOUT)] == ["start", "done"]
    row_once(then_id, RunStatus.SUCCEEDED, timeout=TIMEOUT)
    time.sleep(1)  # a message put back once more would have started by now
    lines = recorded(key, starts, TIMEOUT)
    assert [line.split()[:2] for line in lines] == [["start", run_id]] * starts
    assert len({line.split()[2] for line in lines}) == starts  # a new pool process each time


def test_an_idempotent_run_that_kills_each_process_it_starts_in_fails_and_the_worker_goes_on(
    any_broker: Celery,
) -> None:
    """Celery puts the message of a run whose pool process died back for ever."""
    poison(1.0, MAX_STARTS)


def test_a_first_start_killed_before_its_row_is_written_is_not_counted(app: Celery) -> None:
    """Killed in its first 0.2 s (the default track level writes no row yet), the first
    start is on no record, and the run starts once more."""
    poison(0.0, MAX_STARTS + 1)
