"""A worker told to stop ends, even when its exit hangs.

On the embedded broker a prefork worker runs billiard's blocking pool. ``SIGTERM``
sent to all of its processes at once (``pkill -f``, systemd's default
``KillMode=control-group``) can kill a pool process as it takes the job queue's
lock; the main process then finished its warm shutdown and waited for that lock,
at the interpreter's exit, for ever (about one stop in two, raw Celery on kombu's
filesystem transport as well). taskkit ends it :data:`DEADLINE` seconds after the
shutdown (:mod:`taskkit.bridge.work.exit_deadline`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskkit.bridge.work.exit_deadline import DEADLINE
from taskkit.models import WorkerHeartbeat
from tests.integration.conftest import (
    BROKERS,
    REPO,
    Broker,
    make_app,
    stop,
    transport_settings,
    worker_env,
)

from .processes import MANAGE, alive_until, taskworker_name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
#: Starting, a warm shutdown and the deadline, with room to spare.
TIMEOUT = 30 + DEADLINE


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    options = transport_settings("filesystem", tmp_path / "broker")
    app = make_app("reliability-exit", BROKERS["filesystem"], **options)
    try:
        yield Broker("filesystem", BROKERS["filesystem"], options, app)
    finally:
        app.close()


def started(broker: Broker, log: Path, **extra: str) -> subprocess.Popen[str]:
    """A prefork ``taskworker`` with two pool processes and Beat inside it, once its
    heartbeat row is there; its standard error goes to ``log``. (Without Beat, whose stop
    takes a while, the lock was seldom lost here.)"""
    env = {**worker_env(broker), **extra}
    command = [sys.executable, "-c", MANAGE, "taskworker", "--queues", "default"]
    command += ["--pool", "prefork", "--concurrency", "2", "--loglevel", "warning", "--beat"]
    with log.open("w") as err:
        worker = subprocess.Popen(
            command, env=env, text=True, start_new_session=True, stderr=err, cwd=REPO
        )
    name = taskworker_name(worker)
    rows = WorkerHeartbeat.objects.filter(name=name)
    alive_until([worker], rows.exists, TIMEOUT, lambda: f"no heartbeat row for {name}")
    return worker


def ended(worker: subprocess.Popen[str]) -> int:
    try:
        return worker.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        stop(worker)
        pytest.fail(f"the worker was still there {TIMEOUT:g} s after SIGTERM")


def test_a_worker_whose_exit_hangs_ends_after_the_deadline(broker: Broker, tmp_path: Path) -> None:
    """Its settings make the interpreter's exit wait an hour; it ends, with status 0."""
    log = tmp_path / "stderr.log"
    worker = started(broker, log, TASKKIT_TEST_HANG_AT_EXIT="3600")
    os.kill(worker.pid, signal.SIGTERM)  # the main process only: Celery's own way to stop it
    since = time.monotonic()
    assert ended(worker) == 0
    assert time.monotonic() - since >= DEADLINE
    assert "ending it" in log.read_text()


def group(pgid: int) -> list[int]:
    """The processes of process group ``pgid``, by pid (Linux's ``/proc``)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp
            pids.append(int(stat.parent.name))
    return sorted(pids)


def test_sigterm_to_every_process_of_a_prefork_worker_ends_it(
    broker: Broker, tmp_path: Path
) -> None:
    """As ``pkill -f`` does: each process in turn, the main process first. Four times: the
    lock is lost in about one stop in two."""
    for round_ in range(4):
        log = tmp_path / f"stderr-{round_}.log"
        worker = started(broker, log)
        for pid in group(worker.pid):
            os.kill(pid, signal.SIGTERM)
        assert ended(worker) == 0, log.read_text()[-2000:]
