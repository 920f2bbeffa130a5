"""Time limits from meta ``timeout``, which Celery enforces in a prefork worker only.

The worker keeps its database connections across tasks (``CELERY_DB_REUSE_MAX``), as
the production how-to suggests.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.db import connection

import taskkit
from taskkit.models import RunStatus, TaskRun

from .conftest import BROKERS, Broker, current, make_app, start_worker, stop

pytestmark = pytest.mark.django_db(transaction=True)
QUEUE = "limits"  # consumed by this module's prefork worker alone


@pytest.fixture(scope="module")
def prefork(django_db_setup: Any) -> Iterator[subprocess.Popen[str]]:
    """A prefork worker on Redis (time limits are Celery's, the same on every broker)."""
    app = make_app("taskkit-tests-limits", BROKERS["redis"])
    with current(app), mock.patch.dict(os.environ, {"TASKKIT_TEST_DB_REUSE_MAX": "1000"}):
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


def test_a_query_the_soft_limit_stopped_is_cancelled_and_its_connection_closed(
    prefork: subprocess.Popen[str],
) -> None:
    """The database would go on running the query for nobody; on PostgreSQL its
    connection is broken for good, and, kept for the next tasks
    (``CELERY_DB_REUSE_MAX``), it failed the run's outcome's first statement."""

    def reused(payload: dict[str, Any]) -> bool:
        run = taskkit.enqueue("limits:connection", payload, queue=QUEUE)
        return bool(run.result(timeout=60)["reused"])

    reused({})
    assert reused({}), "this worker keeps its connections across tasks"
    stopped = taskkit.enqueue("limits:connection", {"seconds": 30}, queue=QUEUE)
    row = wait_for_status(stopped.id, 60)
    assert (row.status, row.error.split(":")[0]) == (RunStatus.FAILED, "SoftTimeLimitExceeded")
    if connection.vendor == "postgresql":  # SQLite's queries cannot be stopped half-way
        assert sleeping_queries() == 0, "the stopped query still runs"
    assert not reused({}), "the stopped run's connection was closed"
    assert reused({})


def sleeping_queries() -> int:
    """How many ``limits:connection`` queries PostgreSQL runs now, after up to 5 s."""
    deadline = time.monotonic() + 5
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%%'"
            )
            (count,) = cursor.fetchone()
        if count == 0 or time.monotonic() > deadline:
            return int(count)
        time.sleep(0.1)
