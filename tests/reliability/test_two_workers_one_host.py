"""Two ``manage.py taskworker`` processes on one host, neither given ``-n``.

Under one node name (``celery@host``) they shared a heartbeat row: the sweep
could not tell a dead worker from a live one, so a run on the dead one stayed
``running`` for ever, and on RabbitMQ the second worker died on the first's
remote-control queue (``RESOURCE_LOCKED``). Each now has a name of its own
(``taskkit-<pid>@<host>``) and a heartbeat row of its own: when one is killed
outright, its run is failed with ``WorkerLost`` once ``WORKER_LOST_AFTER``
passes, while the other keeps working.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings

import taskkit
from taskkit.bridge.work.heartbeat import sweep
from taskkit.models import RunStatus, TaskRun, WorkerHeartbeat
from tests.integration.conftest import Broker, stop, worker_env

from .conftest import forget, on_broker, recorded, row_once
from .processes import alive_until, kill_group, start_taskworker, taskworker_name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
TIMEOUT = 30
LOST_AFTER = 2.0


@pytest.fixture
def broker(private_url: str) -> Iterator[Broker]:
    """A private broker, its app made current, and this process's ``WORKER_LOST_AFTER``
    the same as the workers'."""
    lost_after = override_settings(TASKKIT={**settings.TASKKIT, "WORKER_LOST_AFTER": LOST_AFTER})
    with on_broker("reliability-two", private_url) as broker, lost_after:
        yield broker


def start_taskworker_without_name(broker: Broker) -> subprocess.Popen[str]:
    """``manage.py taskworker`` without ``-n``."""
    env = {**worker_env(broker), "TASKKIT_TEST_WORKER_LOST_AFTER": str(LOST_AFTER)}
    options = ("--queues", "default", "--pool", "prefork", "--concurrency", "1")
    return start_taskworker(env, *options)


@pytest.fixture
def workers(broker: Broker) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Two taskworkers, by the node name each should have, once both beat."""
    started = [start_taskworker_without_name(broker), start_taskworker_without_name(broker)]
    try:
        named = {taskworker_name(w): w for w in started}
        rows = WorkerHeartbeat.objects.values_list("name", flat=True)
        alive_until(
            started,
            lambda: set(rows.all()) == set(named),
            TIMEOUT,
            lambda: f"heartbeat rows {set(rows.all())}, wanted {set(named)}",
        )
        yield named
    finally:
        for worker in started:
            stop(worker)


def status(run_id: str, wanted: RunStatus, *, sweeping: bool = False) -> TaskRun:
    """The run's row once it has status ``wanted``; ``sweeping``: sweep lost workers meanwhile,
    as the leader Beat does."""
    return row_once(run_id, wanted, timeout=TIMEOUT, meanwhile=sweep if sweeping else None)


def test_one_killed_is_lost_and_the_other_keeps_working(
    workers: dict[str, subprocess.Popen[str]],
) -> None:
    key = f"two:{uuid.uuid4()}"
    try:
        run_id = taskkit.enqueue("crash:plain", {"key": key, "seconds": TIMEOUT}).id
        recorded(key, 1, TIMEOUT)
        doomed = status(run_id, RunStatus.RUNNING).worker  # the row written 0.2 s into the run
        assert doomed in workers, doomed
        (survivor,) = set(workers) - {doomed}
        assert all(w.poll() is None for w in workers.values())  # both still up

        kill_group(workers[doomed])  # main process and pool at once
        killed = time.monotonic()
        last_seen = WorkerHeartbeat.objects.get(name=doomed).seen_at
        row = status(run_id, RunStatus.FAILED, sweeping=True)
        print(f"run failed {time.monotonic() - killed:.1f}s after its worker was killed")
        assert row.finished_at is not None
        assert row.finished_at - last_seen >= timedelta(seconds=LOST_AFTER)  # not before
        assert row.error.startswith(f"WorkerLost: worker {doomed} not seen since"), row.error
        assert [line.split()[0] for line in recorded(key, 1, TIMEOUT)] == ["start"]

        assert workers[survivor].poll() is None
        kept = WorkerHeartbeat.objects.values_list("name", "lost_at")
        assert {name for name, lost_at in kept if lost_at is None} == {survivor}
        assert {name for name, lost_at in kept if lost_at is not None} == {doomed}  # listed lost
        after = taskkit.enqueue("echo:payload", {"after": "the kill"})
        assert after.result(timeout=TIMEOUT) == {"after": "the kill"}
        assert status(after.id, RunStatus.SUCCEEDED).worker == survivor
    finally:
        forget(key)
