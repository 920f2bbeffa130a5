"""Delayed runs, retries with backoff, the failure store and bulk enqueue, with a real worker + Beat."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
import redis
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.utils import timezone

import taskkit
from taskkit.models import RunStatus, TaskRun

from ..apps.nested.tasks.echo.count import COUNTS_URL
from .conftest import Broker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]
TIMEOUT = 30


def test_enqueue_in_runs_after_the_delay(broker: Broker) -> None:
    start = timezone.now()
    handle = taskkit.enqueue_in("echo:payload", 1.0, {"later": True})
    row = TaskRun.objects.get(pk=handle.id)
    assert row.status == RunStatus.SCHEDULED
    assert row.scheduled_for is not None and row.scheduled_for >= start + timedelta(seconds=1)
    assert handle.result(timeout=TIMEOUT) == {"later": True}
    row.refresh_from_db()
    assert row.started_at is not None and row.started_at >= row.scheduled_for


def test_enqueue_at_passes_the_scheduled_time(broker: Broker) -> None:
    when = timezone.now() + timedelta(milliseconds=500)
    handle = taskkit.get_task("echo:progress").enqueue_at(when, {"steps": 1})
    assert handle.result(timeout=TIMEOUT) == {"queue": "default", "source": "worker"}
    assert taskkit.get_run(handle.id).scheduled_for == when


def test_a_deleted_delayed_run_never_runs(broker: Broker) -> None:
    doomed = taskkit.enqueue_in("echo:payload", 0.5, {"doomed": True})
    TaskRun.objects.filter(pk=doomed.id).delete()
    witness = taskkit.enqueue_in("echo:payload", 0.7, {"witness": True})
    witness.result(timeout=TIMEOUT)
    with pytest.raises(taskkit.RunNotFound):
        taskkit.get_run(doomed.id)


def test_a_thousand_runs_due_in_the_same_second_each_run_once(broker: Broker) -> None:
    key = f"counts:{uuid.uuid4()}"
    due = timezone.now().replace(microsecond=0) + timedelta(seconds=2)
    with transaction.atomic():
        handles = [taskkit.enqueue_at("echo:count", due, {"key": key, "i": i}) for i in range(1000)]
    counts = redis.Redis.from_url(COUNTS_URL, decode_responses=True)
    try:
        deadline = time.monotonic() + 180
        while counts.llen(key) < 1000 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # a run sent twice would show up by now
        ran = [str(run_id) for run_id in counts.lrange(key, 0, -1)]
    finally:
        counts.delete(key)
        counts.close()
    assert len(ran) == 1000, f"{len(ran)} runs"
    assert sorted(ran) == sorted(handle.id for handle in handles)  # each once, none twice
    started = TaskRun.objects.filter(pk__in=ran).values_list("started_at", flat=True)
    assert all(moment is not None and moment >= due for moment in started)


def test_retry_with_backoff_then_success(broker: Broker) -> None:
    handle = taskkit.enqueue("flaky:retry", {"succeed_on": 2})
    assert handle.result(timeout=TIMEOUT) == {"attempt": 2}
    run = taskkit.get_run(handle.id)
    assert run.attempt == 2
    assert [h["error"] for h in run.history] == ["Flaky: attempt 1 failed"]


def test_retries_exhausted_then_failed_with_traceback(broker: Broker) -> None:
    handle = taskkit.enqueue("flaky:retry", {"n": 1})
    with pytest.raises(taskkit.RunFailed, match="attempt 3 failed") as caught:
        handle.result(timeout=TIMEOUT)
    assert "Traceback" in caught.value.traceback
    run = taskkit.get_run(handle.id)
    assert (run.status, run.attempt, run.payload) == (RunStatus.FAILED, 3, {"n": 1})
    assert [h["attempt"] for h in run.history] == [1, 2, 3]
    finished = [h["finished_at"] for h in run.history]
    assert finished == sorted(finished)


def test_retry_failed_reruns_with_the_same_payload(broker: Broker) -> None:
    handle = taskkit.enqueue("echo:fail", {"same": "payload"})
    with pytest.raises(taskkit.RunFailed):
        handle.result(timeout=TIMEOUT)
    [again] = taskkit.retry_failed(handle.id)
    assert again.id == handle.id
    with pytest.raises(taskkit.RunFailed):
        again.result(timeout=TIMEOUT)
    run = taskkit.get_run(handle.id)
    assert run.payload == {"same": "payload"}
    assert len(run.history) == 2
    assert taskkit.remove_failed(name="echo:fail") >= 1
    with pytest.raises(taskkit.RunNotFound):
        taskkit.get_run(handle.id)


def test_enqueue_many_runs_every_payload(broker: Broker) -> None:
    handles = taskkit.enqueue_many("echo:payload", [{"i": i} for i in range(50)])
    assert len({h.id for h in handles}) == 50
    assert [h.result(timeout=TIMEOUT) for h in handles] == [{"i": i} for i in range(50)]


def test_track_all_writes_the_row_at_enqueue(broker: Broker) -> None:
    before = timezone.now()
    handle = taskkit.enqueue("track:outbox", {"kept": 1})
    # the row is there once enqueue returns; sent_at is written after the broker took the
    # message, which a fast worker may already have started: no order between the two
    assert TaskRun.objects.filter(pk=handle.id).exists()
    assert handle.result(timeout=TIMEOUT) == {"kept": 1}
    run = taskkit.get_run(handle.id)
    assert run.started_at is not None and before <= run.created_at <= run.started_at
    assert run.sent_at is not None and run.sent_at >= before


def test_async_twins(broker: Broker) -> None:
    async def main() -> list[taskkit.RunHandle]:
        return [
            await taskkit.aenqueue("echo:payload", {"a": 1}),
            await taskkit.aenqueue_in("echo:payload", 0.1, {"b": 2}),
            await taskkit.aenqueue_at("echo:payload", timezone.now(), {"c": 3}),
            *(await taskkit.aenqueue_many("echo:payload", [{"d": 4}])),
            await taskkit.get_task("echo:payload").aenqueue({"e": 5}),
        ]

    handles = asyncio.run(main())
    # the twins ran in asgiref's sync thread, which keeps its database connection open
    asyncio.run(sync_to_async(connections.close_all)())
    assert [h.result(timeout=TIMEOUT) for h in handles] == [
        {"a": 1}, {"b": 2}, {"c": 3}, {"d": 4}, {"e": 5}
    ]  # fmt: skip


def test_delayed_start_latency_is_under_a_second(broker: Broker) -> None:
    handles = [taskkit.enqueue_in("echo:payload", 0.2, {"i": i}) for i in range(5)]
    for handle in handles:
        handle.result(timeout=TIMEOUT)
    lags = []
    for handle in handles:
        run = taskkit.get_run(handle.id)
        assert run.started_at is not None and run.scheduled_for is not None
        lags.append((run.started_at - run.scheduled_for).total_seconds())
    assert max(lags) < 5, lags  # loose here; bench/ measures the real p50/p95
    time.sleep(0)


def test_track_failures_still_finishes_a_stored_run(broker: Broker) -> None:
    handle = taskkit.enqueue_in("track:quiet", 0.2)
    assert handle.result(timeout=TIMEOUT) == "quiet"
    assert taskkit.get_run(handle.id).status == RunStatus.SUCCEEDED


KILL_BETWEEN_COMMIT_AND_PUBLISH = """
import os, signal, sys
import django
django.setup()
import taskkit
sys.modules["taskkit.bridge.send.enqueue"].publish = lambda runs: os.kill(os.getpid(), signal.SIGKILL)
taskkit.enqueue("track:outbox", {"survived": sys.argv[1]})  # dies right after the commit
"""


def test_track_all_survives_a_kill_between_commit_and_publish(broker: Broker) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TASKKIT_TEST_BROKER": broker.url,
    }
    marker = f"kill -9 on {broker.name}"
    done = subprocess.run(
        [sys.executable, "-c", KILL_BETWEEN_COMMIT_AND_PUBLISH, marker],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    row = TaskRun.objects.get(name="track:outbox", payload={"survived": marker})
    assert row.sent_at is None  # committed, never published
    handle = taskkit.RunHandle(id=str(row.pk), name="track:outbox", queue="default")
    assert handle.result(timeout=TIMEOUT) == {"survived": marker}
