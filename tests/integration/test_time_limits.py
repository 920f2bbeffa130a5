"""Time limits from meta ``timeout``, which Celery enforces in a prefork worker only."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

import taskkit
from taskkit.models import RunStatus, TaskRun

from .conftest import BROKERS, Broker, current, make_app, start_worker, stop

pytestmark = pytest.mark.django_db(transaction=True)
QUEUE = "limits"  # consumed by this module's prefork worker alone


@pytest.fixture(scope="module")
def prefork(django_db_setup: Any) -> Iterator[subprocess.Popen[str]]:
    """A prefork worker on Redis (time limits are Celery's, the same on every broker)."""
    app = make_app("taskkit-tests-limits", BROKERS["redis"])
    with current(app):
        process = start_worker(
            Broker("redis", BROKERS["redis"], {}, app), "prefork", (QUEUE,), "prefork"
        )
        try:
            yield process
        finally:
            stop(process)
    app.close()


def wait_for_status(run_id: str, timeout: float) -> TaskRun:
    deadline = time.monotonic() + timeout
    while True:
        row = TaskRun.objects.filter(pk=run_id).first()
        if row is not None and row.finished:
            return row
        assert time.monotonic() < deadline, f"run still {row and row.status}"
        time.sleep(0.2)


def test_the_soft_limit_fails_the_run(prefork: subprocess.Popen[str]) -> None:
    handle = taskkit.enqueue("limits:sleep", {"seconds": 30}, queue=QUEUE)
    row = wait_for_status(handle.id, 60)
    assert row.status == RunStatus.FAILED
    assert row.error.startswith("SoftTimeLimitExceeded")


def test_the_hard_limit_fails_the_run_the_worker_killed(prefork: subprocess.Popen[str]) -> None:
    handle = taskkit.enqueue("limits:sleep", {"seconds": 30, "stubborn": True}, queue=QUEUE)
    row = wait_for_status(handle.id, 60)
    assert row.status == RunStatus.FAILED
    assert row.error.startswith("TimeLimitExceeded")
    assert row.started_at is not None and row.finished_at is not None
    assert (row.payload, row.queue) == ({"seconds": 30, "stubborn": True}, QUEUE)
    # the worker goes on: the next run is taken by a fresh child process
    assert taskkit.enqueue("limits:sleep", {"seconds": 0}, queue=QUEUE).result(timeout=60) == {
        "slept": 0
    }
