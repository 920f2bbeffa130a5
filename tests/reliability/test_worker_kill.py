"""The whole worker SIGKILLed mid-run: its main process and its pool processes at once.

No process is left to report the run. An idempotent task's message was never
acknowledged: Redis gives it back once it is older than the transport's
``visibility_timeout`` (a few seconds here; an hour by default), and a new
worker runs it to the end. Any other task's run is settled by the leader Beat's
sweep once the dead worker's heartbeat is older than ``WORKER_LOST_AFTER``:
failed with ``WorkerLost``, never left ``running`` for ever, never run again.
An idempotent run that kills its whole worker each time it starts (a threads
pool runs it in the worker's own process) is failed after ``MAX_STARTS`` starts,
and the worker started after that stays up.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import taskkit
from taskkit.bridge.work.delivery import MAX_STARTS
from taskkit.models import RunStatus, TaskRun
from tests.integration.conftest import Broker, start_worker, stop

from .conftest import PrivateRedis, forget, on_broker, recorded, row_once, start_beat
from .processes import kill_group

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
TIMEOUT = 30
#: Redis gives an unacknowledged message back after this; each worker looks every second.
OPTIONS: dict[str, Any] = {
    "broker_transport_options": {
        "visibility_timeout": 4,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
}


@pytest.fixture
def broker(private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Broker]:
    """The private Redis, its app made current, and a Beat that sweeps lost workers."""
    monkeypatch.setenv("TASKKIT_TEST_WORKER_LOST_AFTER", "2")  # the subprocesses' setting
    beat = start_beat(private_redis.url)
    try:
        with on_broker("reliability-kill", private_redis.url, **OPTIONS) as broker:
            yield broker
    finally:
        stop(beat)


def status(run_id: str, wanted: RunStatus) -> TaskRun:
    return row_once(run_id, wanted, timeout=TIMEOUT)


def start_and_kill(broker: Broker, name: str, seconds: float) -> tuple[str, str]:
    """Run ``name`` on a prefork worker, kill the worker once the run shows ``running``."""
    key = f"kill:{uuid.uuid4()}"
    worker = start_worker(broker, "doomed", pool="prefork")
    try:
        run_id = taskkit.enqueue(name, {"key": key, "seconds": seconds}).id
        recorded(key, 1, TIMEOUT)
        status(run_id, RunStatus.RUNNING)  # written 0.2 s into the run
    finally:
        kill_group(worker)  # main process and pool processes
        stop(worker)  # nothing left; waits for the group to be gone
    return run_id, key


def test_an_idempotent_run_comes_back_after_the_visibility_timeout(broker: Broker) -> None:
    started = time.monotonic()
    run_id, key = start_and_kill(broker, "crash:idempotent", 1.5)
    worker = start_worker(broker, "next", pool="prefork")
    try:
        found = recorded(key, 3, TIMEOUT)  # started, started again, done
        assert [line.split()[:2] for line in found] == [
            ["start", run_id],
            ["start", run_id],
            ["done", run_id],
        ]
        assert found[0].split()[2] != found[1].split()[2]  # in the new worker
        status(run_id, RunStatus.SUCCEEDED)
        time.sleep(1)
        assert len(recorded(key, 3, TIMEOUT)) == 3  # once again, not twice
    finally:
        stop(worker)
        forget(key)
    print(f"idempotent run back and done in {time.monotonic() - started:.1f}s")


def test_another_run_is_failed_once_its_worker_is_lost(broker: Broker) -> None:
    started = time.monotonic()
    run_id, key = start_and_kill(broker, "crash:plain", 3)
    killed = time.monotonic()
    row = status(run_id, RunStatus.FAILED)
    print(f"run failed {time.monotonic() - killed:.1f}s after its worker was killed")
    assert row.error.startswith("WorkerLost: worker doomed-redis-"), row.error
    assert row.finished_at is not None
    worker = start_worker(broker, "next", pool="prefork")
    try:
        time.sleep(2)
        assert [line.split()[0] for line in recorded(key, 1, TIMEOUT)] == [
            "start"
        ]  # never run again
    finally:
        stop(worker)
        forget(key)
    assert TaskRun.objects.get(pk=run_id).status == RunStatus.FAILED
    print(f"whole test {time.monotonic() - started:.1f}s")


def test_an_idempotent_run_that_kills_its_whole_worker_each_time_fails_and_workers_stay_up(
    broker: Broker,
) -> None:
    """A supervisor (systemd's ``Restart=always``) starts a worker each time one dies."""
    key = f"kill:{uuid.uuid4()}"
    run_id = taskkit.enqueue("crash:poison", {"key": key, "seconds": 1}).id
    failed = TaskRun.objects.filter(pk=run_id, status=RunStatus.FAILED)
    lives = 0
    try:
        while not failed.exists() and lives <= MAX_STARTS:
            worker = start_worker(broker, "supervised")
            lives += 1
            deadline = time.monotonic() + TIMEOUT
            while worker.poll() is None and not failed.exists():
                assert time.monotonic() < deadline, f"life {lives}: neither killed nor failed"
                time.sleep(0.1)
            if worker.poll() is None:  # the life that failed the run: it stays up
                time.sleep(1)
                assert worker.poll() is None
            stop(worker)
        row = status(run_id, RunStatus.FAILED)
        assert f"each of its {MAX_STARTS} starts" in row.error, row.error
        assert lives == MAX_STARTS + 1  # killed by each start, then one that failed it
        lines = recorded(key, MAX_STARTS, TIMEOUT)
        assert [line.split()[:2] for line in lines] == [["start", run_id]] * MAX_STARTS
    finally:
        forget(key)
