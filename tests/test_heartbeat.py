"""Worker heartbeats, and the sweep that settles the ``running`` runs of lost workers."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
import weakref
from datetime import datetime, timedelta
from types import SimpleNamespace

import celery
import pytest
from django.test import override_settings
from django.utils import timezone
from kombu import Queue

import taskkit
from taskkit.bridge import broadcast
from taskkit.bridge.locks import acquire, lock_key
from taskkit.bridge.work import about, heartbeat
from taskkit.definition import Lock
from taskkit.models import LOST_KEPT, RunStatus, TaskLock, TaskRun, WorkerHeartbeat
from taskkit.registry import get_task

pytestmark = pytest.mark.django_db(transaction=True)  # the heartbeat thread has its own connection

NOW = timezone.now()
ABOUT = about.About(["default", "mail"], 4, "prefork", "5.7.0", "1.0")


def running(name: str, worker: str, started: datetime, **fields: object) -> TaskRun:
    return TaskRun.objects.create(
        name=name,
        status=RunStatus.RUNNING,
        worker=worker,
        started_at=started,
        payload={"key": "k", "seconds": 1},
        **fields,
    )


def seen(worker: str, ago: float, started_ago: float = 3600) -> None:
    WorkerHeartbeat.objects.create(
        name=worker,
        started_at=NOW - timedelta(seconds=started_ago),
        seen_at=NOW - timedelta(seconds=ago),
    )


def test_the_runs_of_a_worker_not_seen_for_long_are_failed() -> None:
    seen("dead@host", ago=61)
    seen("alive@host", ago=10)
    lost = running("crash:plain", "dead@host", NOW - timedelta(seconds=100))
    alive = running("crash:plain", "alive@host", NOW - timedelta(seconds=100))
    done = TaskRun.objects.create(
        name="crash:plain", status=RunStatus.SUCCEEDED, worker="dead@host"
    )
    assert heartbeat.sweep(NOW) == 1
    lost.refresh_from_db()
    assert lost.status == RunStatus.FAILED
    assert lost.error.startswith("WorkerLost: worker dead@host not seen since")
    assert lost.finished_at == NOW
    assert [entry["attempt"] for entry in lost.history] == [1]
    assert TaskRun.objects.get(pk=alive.pk).status == RunStatus.RUNNING
    assert TaskRun.objects.get(pk=done.pk).status == RunStatus.SUCCEEDED
    # the lost worker's row is marked; sweeping again changes nothing
    assert dict(WorkerHeartbeat.objects.values_list("name", "lost_at")) == {
        "dead@host": NOW,
        "alive@host": None,
    }
    assert heartbeat.sweep(NOW) == 0
    assert WorkerHeartbeat.objects.get(name="dead@host").lost_at == NOW


def test_a_lost_worker_is_kept_a_day_then_pruned() -> None:
    seen("dead@host", ago=61)
    heartbeat.sweep(NOW)
    heartbeat.sweep(NOW + LOST_KEPT)
    assert WorkerHeartbeat.objects.lost().count() == 1
    heartbeat.sweep(NOW + LOST_KEPT + timedelta(seconds=1))
    assert not WorkerHeartbeat.objects.exists()


def test_a_lost_worker_back_under_its_name_is_alive_again() -> None:
    seen("back@host", ago=61)
    WorkerHeartbeat.objects.filter(name="back@host").update(process="elsewhere:1:a")
    heartbeat.sweep(NOW)
    assert heartbeat.beat("back@host", NOW, "elsewhere:2:b")
    row = WorkerHeartbeat.objects.get(name="back@host")
    assert (row.lost_at, row.process, row.seen_at > NOW) == (None, "elsewhere:2:b", True)
    assert list(WorkerHeartbeat.objects.alive(NOW).values_list("name", flat=True)) == ["back@host"]


def test_a_beat_records_what_the_worker_is_and_holds() -> None:
    assert heartbeat.beat("w@host", NOW, "box:41:beef", ABOUT, (2, 5))
    row = WorkerHeartbeat.objects.get(name="w@host")
    assert (row.host, row.pid, row.queues, row.concurrency, row.pool) == (
        "box",
        41,
        ["default", "mail"],
        4,
        "prefork",
    )
    assert (row.active, row.reserved, row.celery_version, row.taskkit_version) == (
        2,
        5,
        "5.7.0",
        "1.0",
    )
    assert heartbeat.beat("w@host", NOW, "box:41:beef", ABOUT, (0, 0))
    assert WorkerHeartbeat.objects.values_list("active", "reserved").get() == (0, 0)


def test_an_older_worker_s_row_reads_empty() -> None:
    seen("old@host", ago=1)
    row = WorkerHeartbeat.objects.get(name="old@host")
    assert (row.host, row.pid, row.queues, row.concurrency, row.pool) == ("", None, [], 0, "")


def test_a_worker_is_described_from_the_consumer_worker_ready_sends() -> None:
    from celery.concurrency.prefork import TaskPool

    consumer = SimpleNamespace(
        hostname="w@host",
        controller=SimpleNamespace(concurrency=8, pool_cls=TaskPool),
        pool=SimpleNamespace(limit=4),
        task_consumer=SimpleNamespace(
            queues=[
                *(SimpleNamespace(name=n) for n in ("b", "a", "b")),
                Queue("a"),
                broadcast.worker_queue(),  # bcast.<uuid>: broadcasts, not work
            ]
        ),
    )
    found = about.describe(consumer)
    assert (found.queues, found.concurrency, found.pool) == (["a", "b"], 4, "prefork")
    assert found.celery_version == celery.__version__
    assert found.taskkit_version == taskkit.__version__
    bare = about.describe(SimpleNamespace(hostname="w@host"))  # tells nothing
    assert (bare.queues, bare.concurrency, bare.pool) == ([], 0, "")


def test_the_runs_held_are_read_from_the_worker_state(monkeypatch: pytest.MonkeyPatch) -> None:
    from celery.worker import state

    class Request:  # weakly referenced, as Celery's requests
        pass

    working, waiting = [Request(), Request()], [Request()]
    monkeypatch.setattr(state, "active_requests", weakref.WeakSet(working))
    # a run is reserved first, and stays so while it runs
    monkeypatch.setattr(state, "reserved_requests", weakref.WeakSet(working + waiting))
    assert about.held() == (2, 1)


def test_a_worker_started_again_under_its_name_loses_what_it_ran_before() -> None:
    seen("same@host", ago=1, started_ago=30)
    before = running("crash:plain", "same@host", NOW - timedelta(seconds=60))
    after = running("crash:plain", "same@host", NOW - timedelta(seconds=5))
    assert heartbeat.sweep(NOW) == 1
    before.refresh_from_db()
    assert before.status == RunStatus.FAILED and "restarted at" in before.error
    assert TaskRun.objects.get(pk=after.pk).status == RunStatus.RUNNING
    assert WorkerHeartbeat.objects.filter(name="same@host").exists()


def test_idempotent_runs_are_left_to_the_broker_and_unknown_tasks_fail() -> None:
    seen("dead@host", ago=120)
    idempotent = running("crash:idempotent", "dead@host", NOW - timedelta(seconds=200))
    gone = running("gone:task", "dead@host", NOW - timedelta(seconds=200))
    assert heartbeat.sweep(NOW) == 1
    assert TaskRun.objects.get(pk=idempotent.pk).status == RunStatus.RUNNING
    assert TaskRun.objects.get(pk=gone.pk).status == RunStatus.FAILED


def test_a_lost_run_is_retried_as_its_policy_says() -> None:
    seen("dead@host", ago=120)
    first = running("flaky:retry", "dead@host", NOW - timedelta(seconds=200), attempt=1)
    last = running("flaky:retry", "dead@host", NOW - timedelta(seconds=200), attempt=3)
    assert heartbeat.sweep(NOW) == 2
    first.refresh_from_db()
    assert (first.status, first.attempt, first.sent_at) == (RunStatus.SCHEDULED, 2, None)
    assert first.scheduled_for == NOW + timedelta(seconds=0.2)
    assert first.finished_at is None
    assert TaskRun.objects.get(pk=last.pk).status == RunStatus.FAILED


def test_a_run_finished_meanwhile_is_not_overwritten(monkeypatch: pytest.MonkeyPatch) -> None:
    seen("dead@host", ago=120)
    row = running("crash:plain", "dead@host", NOW - timedelta(seconds=200))
    real = heartbeat._lose

    def finish_first(run: TaskRun, why: str, now: datetime) -> bool:
        TaskRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
        return real(run, why, now)

    monkeypatch.setattr(heartbeat, "_lose", finish_first)
    assert heartbeat.sweep(NOW) == 0
    assert TaskRun.objects.get(pk=row.pk).status == RunStatus.SUCCEEDED


def test_the_locks_of_a_lost_run_are_released() -> None:
    seen("dead@host", ago=120)
    row = running("locks:single", "dead@host", NOW - timedelta(seconds=200))
    key = lock_key(Lock.SINGLE_INSTANCE, get_task("locks:single"), {})
    assert acquire(key, str(row.pk), timedelta(minutes=10)) is None
    assert acquire("other", str(uuid.uuid4()), timedelta(minutes=10)) is None
    assert heartbeat.sweep(NOW) == 1
    assert TaskRun.objects.get(pk=row.pk).status == RunStatus.FAILED
    assert list(TaskLock.objects.values_list("key", flat=True)) == ["other"]


@override_settings(TASKKIT={"WORKER_LOST_AFTER": 0.4})
def test_a_worker_beats_until_it_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    assert heartbeat.interval() == pytest.approx(0.1)
    monkeypatch.setattr(heartbeat, "held", lambda: (1, 3))
    heart = heartbeat.Heart()
    heart.start("beating@host", ABOUT)
    try:
        deadline = time.monotonic() + 10
        while not WorkerHeartbeat.objects.filter(name="beating@host").exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first = WorkerHeartbeat.objects.get(name="beating@host")
        time.sleep(0.3)
        later = WorkerHeartbeat.objects.get(name="beating@host")
        assert later.seen_at > first.seen_at
        assert later.started_at == first.started_at
        assert (later.queues, later.active, later.reserved) == (["default", "mail"], 1, 3)
    finally:
        heart.stop()
    # stopped cleanly: no row left, so it is not listed among the workers lost
    assert not WorkerHeartbeat.objects.filter(name="beating@host").exists()


@override_settings(TASKKIT={"WORKER_LOST_AFTER": 0.4})
def test_a_worker_stopped_with_runs_left_running_keeps_its_row_for_the_sweep() -> None:
    """A cold shutdown killed its runs: the sweep must still find the worker and fail them."""
    heart = heartbeat.Heart()
    heart.start("cold@host", ABOUT)
    try:
        deadline = time.monotonic() + 10
        while not WorkerHeartbeat.objects.filter(name="cold@host").exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        running("crash:plain", "cold@host", timezone.now())
    finally:
        heart.stop()
    stopped = WorkerHeartbeat.objects.get(name="cold@host").seen_at
    time.sleep(0.3)
    assert WorkerHeartbeat.objects.get(name="cold@host").seen_at == stopped  # no more beats


def test_the_worker_ready_signal_starts_the_heart(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[str, about.About | None]] = []
    monkeypatch.setattr(heartbeat.heart, "start", lambda name, found: started.append((name, found)))
    monkeypatch.setattr(heartbeat, "describe", lambda sender: ABOUT)
    heartbeat._start(sender=SimpleNamespace(hostname="w1@host"))
    heartbeat._start(sender=object())  # no node name: nothing to beat for
    assert started == [("w1@host", ABOUT)]

    def broken(sender: object) -> about.About:
        raise AttributeError("no such thing")

    monkeypatch.setattr(heartbeat, "describe", broken)
    heartbeat._start(sender=SimpleNamespace(hostname="w2@host"))  # it beats all the same
    assert started[-1] == ("w2@host", None)


def test_a_second_live_process_under_one_name_never_refreshes_the_first_ones_row() -> None:
    """Two workers as ``celery@host``: the sweep never fired for the one killed."""
    first_start, second_start = NOW - timedelta(seconds=30), NOW - timedelta(seconds=5)
    assert heartbeat.beat("twin@host", first_start, "host:1:a")
    assert not heartbeat.beat("twin@host", second_start, "host:2:b")
    row = WorkerHeartbeat.objects.get(name="twin@host")
    assert (row.process, row.started_at) == ("host:1:a", first_start)
    assert heartbeat.beat("twin@host", first_start, "host:1:a")  # its own row: refreshed


@override_settings(TASKKIT={"WORKER_LOST_AFTER": 60})
def test_a_row_its_writer_left_stale_is_taken_over_after_the_sweep_could_see_it() -> None:
    WorkerHeartbeat.objects.create(
        name="twin@host",
        started_at=NOW - timedelta(seconds=600),
        seen_at=timezone.now() - timedelta(seconds=61),
        process="host:1:a",
    )
    lost = running("crash:plain", "twin@host", NOW - timedelta(seconds=100))
    assert heartbeat.sweep() == 1  # the first process is lost: its run is failed
    assert TaskRun.objects.get(pk=lost.pk).status == RunStatus.FAILED
    assert heartbeat.beat("twin@host", NOW, "host:2:b")
    assert WorkerHeartbeat.objects.get(name="twin@host").process == "host:2:b"


def test_a_restart_under_the_same_name_takes_the_row_at_once() -> None:
    """The previous life's pid is gone from this host: it is no twin, its runs are lost."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = f"{socket.gethostname()}:{dead.pid}:0000"
    assert heartbeat.beat("fixed@host", NOW - timedelta(seconds=30), gone)
    assert heartbeat.beat("fixed@host", NOW, heartbeat.process_identity())
    assert WorkerHeartbeat.objects.get(name="fixed@host").started_at == NOW
    running("crash:plain", "fixed@host", NOW - timedelta(seconds=10))
    assert heartbeat.sweep() == 1  # what the last life ran is lost


@override_settings(TASKKIT={"WORKER_LOST_AFTER": 60})
def test_a_restart_that_got_its_previous_pid_back_takes_the_row_after_two_beats() -> None:
    """A container's pid 1 started again: same host, same pid, same default node name."""
    previous = f"{socket.gethostname()}:{os.getpid()}:0000"
    WorkerHeartbeat.objects.create(
        name="pid1@host",
        started_at=NOW - timedelta(seconds=600),
        seen_at=timezone.now() - timedelta(seconds=5),  # fresh: its previous life just died
        process=previous,
    )
    lost = running("crash:plain", "pid1@host", NOW - timedelta(seconds=100))
    this = heartbeat.process_identity()
    assert not heartbeat.beat("pid1@host", NOW, this)  # a live twin would refresh it
    WorkerHeartbeat.objects.filter(name="pid1@host").update(
        seen_at=timezone.now() - timedelta(seconds=2 * heartbeat.interval() + 1)
    )
    assert heartbeat.beat("pid1@host", NOW, this)
    assert WorkerHeartbeat.objects.get(name="pid1@host").process == this
    assert heartbeat.sweep() == 1  # what the previous life ran is lost
    assert TaskRun.objects.get(pk=lost.pk).status == RunStatus.FAILED


@override_settings(TASKKIT={"WORKER_LOST_AFTER": 0.4})
def test_a_name_clash_is_logged_once_after_three_refusals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heartbeat.beat("clash@host", NOW, "elsewhere:1:a")  # another host's live process holds it
    WorkerHeartbeat.objects.filter(name="clash@host").update(seen_at=NOW + timedelta(days=1))
    heart = heartbeat.Heart()
    with caplog.at_level("ERROR", logger="taskkit.worker"):
        heart.start("clash@host")
        try:
            time.sleep(heartbeat.interval() * (heartbeat.REFUSALS_BEFORE_ERROR + 3))
        finally:
            heart.stop()
    clashes = [r for r in caplog.records if "uses the node name clash@host" in r.getMessage()]
    assert len(clashes) == 1
    assert WorkerHeartbeat.objects.get(name="clash@host").process == "elsewhere:1:a"
