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

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.test import override_settings

import taskkit
from taskkit.bridge.work.heartbeat import sweep
from taskkit.models import RunStatus, TaskRun, WorkerHeartbeat
from tests.apps.nested.tasks.echo.count import COUNTS_URL
from tests.integration.conftest import REPO, Broker, current, make_app, stop, worker_env

from .conftest import recorded

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
TIMEOUT = 30
LOST_AFTER = 2.0
#: ``manage.py`` of a project whose package imports its Celery app (Celery's Django
#: layout); the test settings have no such package, so the suite's app is imported first.
MANAGE = (
    "import sys, tests.celery_app; from django.core.management import execute_from_command_line; "
    "execute_from_command_line(['manage.py', *sys.argv[1:]])"
)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A private broker, its app made current, and this process's ``WORKER_LOST_AFTER``
    the same as the workers'."""
    if request.param == "redis":
        url = request.getfixturevalue("private_redis").url
    else:
        url = f"amqp://guest:guest@127.0.0.1:5672/{request.getfixturevalue('rabbitmq_vhost')}"
    app = make_app(f"reliability-two-{request.param}", url)
    lost_after = override_settings(TASKKIT={**settings.TASKKIT, "WORKER_LOST_AFTER": LOST_AFTER})
    try:
        with current(app), lost_after:
            yield Broker(request.param, url, {}, app)
    finally:
        app.close()


def start_taskworker(broker: Broker) -> subprocess.Popen[str]:
    """``manage.py taskworker`` without ``-n``, in a process group of its own."""
    env = {**worker_env(broker), "TASKKIT_TEST_WORKER_LOST_AFTER": str(LOST_AFTER)}
    command = [
        sys.executable, "-c", MANAGE, "taskworker", "--queues", "default",
        "--pool", "prefork", "--concurrency", "1", "--loglevel", "warning",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, env=env, text=True, start_new_session=True)


@pytest.fixture
def workers(broker: Broker) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Two taskworkers, by the node name each should have, once both beat."""
    started = [start_taskworker(broker), start_taskworker(broker)]
    try:
        named = {f"taskkit-{w.pid}@{socket.gethostname()}": w for w in started}
        deadline = time.monotonic() + TIMEOUT
        while (beating := set(WorkerHeartbeat.objects.values_list("name", flat=True))) != set(
            named
        ):
            assert all(w.poll() is None for w in started), [w.returncode for w in started]
            assert time.monotonic() < deadline, f"heartbeat rows {beating}, wanted {set(named)}"
            time.sleep(0.05)
        yield named
    finally:
        for worker in started:
            stop(worker)


def status(run_id: str, wanted: RunStatus, *, sweeping: bool = False) -> TaskRun:
    """The run's row once it has status ``wanted``; ``sweeping``: sweep lost workers meanwhile,
    as the leader Beat does."""
    deadline = time.monotonic() + TIMEOUT
    while (row := TaskRun.objects.filter(pk=run_id).first()) is None or row.status != wanted:
        assert time.monotonic() < deadline, row and row.status
        if sweeping:
            sweep()
        time.sleep(0.05)
    return row


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

        os.killpg(workers[doomed].pid, signal.SIGKILL)  # main process and pool at once
        workers[doomed].wait(10)
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
        counts = redis.Redis.from_url(COUNTS_URL)
        try:
            counts.delete(key)
        finally:
            counts.close()
