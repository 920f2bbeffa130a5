"""The worker's run recorder: short runs get one row write, batched; long runs show RUNNING."""

from __future__ import annotations

import gc
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from taskkit.bridge.work import recorder as recorder_module
from taskkit.bridge.work.heartbeat import sweep
from taskkit.bridge.work.recorder import Recorder
from taskkit.models import RunStatus, TaskRun, WorkerHeartbeat
from tests.payloads import nested

pytestmark = pytest.mark.django_db(transaction=True)  # the writer thread has its own connection


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every row the recorder writes, as (run id, status), in order."""
    seen: list[tuple[str, str]] = []
    real = recorder_module.upsert_many

    def spy(rows: Any) -> None:
        rows = list(rows)
        seen.extend((run_id, str(fields["status"])) for run_id, fields in rows)
        real(rows)

    monkeypatch.setattr(recorder_module, "upsert_many", spy)
    return seen


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    recorder.enabled = True
    yield recorder
    recorder.shutdown()


def row(status: RunStatus, **fields: Any) -> dict[str, Any]:
    return {
        "name": "echo:payload",
        "queue": "default",
        "payload": {"a": 1},
        "attempt": 1,
        "source": "worker",
        "worker": "w1@host",
        "started_at": timezone.now(),
        "status": status,
        **fields,
    }


def eventually(check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def status(run_id: str) -> str | None:
    return TaskRun.objects.filter(pk=run_id).values_list("status", flat=True).first()


def test_a_short_run_is_written_once_when_it_ends(
    recorder: Recorder, writes: list[tuple[str, str]]
) -> None:
    run_ids = [str(uuid.uuid4()) for _ in range(20)]
    for run_id in run_ids:
        recorder.started(run_id, row(RunStatus.RUNNING))
        recorder.finished(run_id, row(RunStatus.SUCCEEDED, result={"ok": True}))
    eventually(lambda: TaskRun.objects.filter(status=RunStatus.SUCCEEDED).count() == 20)
    assert sorted(writes) == sorted((run_id, "succeeded") for run_id in run_ids)
    stored = TaskRun.objects.get(pk=run_ids[0])
    assert (stored.result, stored.worker, stored.payload) == ({"ok": True}, "w1@host", {"a": 1})


def test_a_long_run_shows_running_then_its_end(
    recorder: Recorder, writes: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder_module, "START_AFTER", 0.1)
    run_id = str(uuid.uuid4())
    recorder.started(run_id, row(RunStatus.RUNNING))
    assert status(run_id) is None
    eventually(lambda: status(run_id) == RunStatus.RUNNING)
    recorder.finished(run_id, row(RunStatus.SUCCEEDED))
    eventually(lambda: status(run_id) == RunStatus.SUCCEEDED)
    assert writes == [(run_id, "running"), (run_id, "succeeded")]


def test_progress_and_failures_write_the_running_row_first(
    recorder: Recorder, writes: list[tuple[str, str]]
) -> None:
    run_id = str(uuid.uuid4())
    recorder.started(run_id, row(RunStatus.RUNNING))
    recorder.written(run_id)  # what progress and failures call before they update the row
    assert status(run_id) == RunStatus.RUNNING
    recorder_module.upsert(run_id, row(RunStatus.FAILED))
    time.sleep(recorder_module.START_AFTER + 3 * recorder_module.FLUSH_EVERY)
    assert status(run_id) == RunStatus.FAILED  # the pending start did not land after it
    assert writes == [(run_id, "running"), (run_id, "failed")]


def test_rows_wait_for_the_database_and_are_written_once_it_is_back(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = recorder_module.upsert_many
    failures = iter([True])

    def flaky(rows: Any) -> None:
        rows = list(rows)
        if rows and next(failures, False):
            raise RuntimeError("database is down")
        real(rows)

    monkeypatch.setattr(recorder_module, "upsert_many", flaky)
    monkeypatch.setattr(recorder_module, "RETRY_AFTER", 0.01)
    run_id = str(uuid.uuid4())
    recorder.finished(run_id, row(RunStatus.SUCCEEDED))
    eventually(lambda: status(run_id) == RunStatus.SUCCEEDED)


def test_shutdown_writes_what_is_pending(recorder: Recorder) -> None:
    run_id = str(uuid.uuid4())
    recorder.finished(run_id, row(RunStatus.SUCCEEDED))
    recorder.shutdown()
    assert status(run_id) == RunStatus.SUCCEEDED


def test_outside_a_worker_rows_are_written_at_once(writes: list[tuple[str, str]]) -> None:
    plain = Recorder()
    run_id = str(uuid.uuid4())
    plain.started(run_id, row(RunStatus.RUNNING))
    assert status(run_id) == RunStatus.RUNNING
    plain.finished(run_id, row(RunStatus.SUCCEEDED))
    assert status(run_id) == RunStatus.SUCCEEDED
    assert plain._thread is None


def test_a_row_the_database_refuses_does_not_hold_up_the_others(recorder: Recorder) -> None:
    """A payload too deep to store fails its own row only: the batch goes on, the run ends visibly."""
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    recorder.finished(bad, row(RunStatus.SUCCEEDED, payload=nested(50_000), result={"ok": 1}))
    recorder.finished(good, row(RunStatus.SUCCEEDED))
    recorder.flush()
    assert TaskRun.objects.get(pk=good).payload == {"a": 1}
    refused = TaskRun.objects.get(pk=bad)
    assert (refused.status, refused.payload, refused.result) == (RunStatus.SUCCEEDED, {}, None)
    assert "payload and result not stored" in refused.error
    assert not recorder._finals  # nothing left to retry for ever


def test_an_unreachable_database_keeps_the_rows_for_the_next_try(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    def away(rows: Any) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(recorder_module, "upsert_many", away)
    run_id = str(uuid.uuid4())
    recorder.finished(run_id, row(RunStatus.SUCCEEDED))
    with pytest.raises(OperationalError):
        recorder.flush()
    assert run_id in recorder._finals
    monkeypatch.undo()
    recorder.flush()
    assert TaskRun.objects.get(pk=run_id).status == RunStatus.SUCCEEDED


def test_the_window_in_which_a_lost_workers_sweep_cannot_see_a_run(recorder: Recorder) -> None:
    """The Guarantees page's open window: a ``track="runs"`` run has no row for its first
    ``START_AFTER`` seconds, so the sweep of its dead worker finds nothing to settle."""
    assert recorder_module.START_AFTER == 0.2

    def lost() -> None:
        WorkerHeartbeat.objects.update_or_create(
            name="lost@host",
            defaults={
                "started_at": timezone.now(),
                "seen_at": timezone.now() - timedelta(days=1),
                "lost_at": None,  # not swept yet
            },
        )

    run_id = str(uuid.uuid4())
    recorder.started(run_id, row(RunStatus.RUNNING, worker="lost@host"))
    lost()
    assert sweep() == 0 and status(run_id) is None  # inside the window: invisible
    eventually(lambda: status(run_id) == RunStatus.RUNNING)
    lost()
    assert sweep() == 1 and status(run_id) == RunStatus.FAILED  # after it: failed as lost


def test_a_quiet_process_waits_for_a_batch_and_a_busy_one_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Statements grow with the runs, not with the processes: finished rows wait for others
    while runs keep finishing (up to MAX_WAIT), BATCH_ROWS of them go at once, and so do rows
    after a QUIET spell and a due RUNNING row."""
    quiet = Recorder()
    quiet.enabled = True
    monkeypatch.setattr(quiet, "_ensure_thread", lambda: None)  # no writer: due() is asked
    clock = [1000.0]
    monkeypatch.setattr("taskkit.bridge.work.recorder.time.monotonic", lambda: clock[0])
    assert not quiet.due()
    quiet.finished(str(uuid.uuid4()), row(RunStatus.SUCCEEDED))
    assert not quiet.due()
    steps = round(recorder_module.MAX_WAIT / (recorder_module.QUIET / 2))
    for _ in range(steps - 1):  # runs keep finishing, one in less than QUIET
        clock[0] += recorder_module.QUIET / 2
        quiet.finished(str(uuid.uuid4()), row(RunStatus.SUCCEEDED))
        assert not quiet.due()
    clock[0] += recorder_module.QUIET / 2 + 1e-6  # (float sums fall short)
    assert quiet.due()  # the oldest waited MAX_WAIT

    ended = Recorder()
    ended.enabled = True
    monkeypatch.setattr(ended, "_ensure_thread", lambda: None)
    ended.finished(str(uuid.uuid4()), row(RunStatus.SUCCEEDED))
    clock[0] += recorder_module.QUIET
    assert ended.due()  # no run finished since: the last of a burst are not held back

    busy = Recorder()
    busy.enabled = True
    monkeypatch.setattr(busy, "_ensure_thread", lambda: None)
    for _ in range(recorder_module.BATCH_ROWS):
        busy.finished(str(uuid.uuid4()), row(RunStatus.SUCCEEDED))
    assert busy.due()

    starting = Recorder()
    starting.enabled = True
    monkeypatch.setattr(starting, "_ensure_thread", lambda: None)
    starting.started(str(uuid.uuid4()), row(RunStatus.RUNNING))
    assert not starting.due()
    clock[0] += recorder_module.START_AFTER
    assert starting.due()


def test_a_new_rows_defaults_are_made_for_each_statement() -> None:
    """The upsert's plan is kept per field set; a default such as ``created_at``'s now is not."""
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    fields = {"name": "echo:payload", "status": RunStatus.SUCCEEDED}
    recorder_module.upsert(first, fields)
    time.sleep(0.01)
    before = timezone.now()
    recorder_module.upsert(second, fields)
    rows = {str(run.id): run for run in TaskRun.objects.filter(pk__in=[first, second])}
    assert rows[first].created_at < before <= rows[second].created_at
    assert rows[second].payload == {} and rows[second].history == [] and rows[second].attempt == 1


def test_a_threads_connection_is_not_kept_by_the_row_plans() -> None:
    """Each thread has a connection of its own; a pool's short-lived threads must not
    leave theirs behind in what the upserts keep."""
    from django.db import connections

    seen: list[weakref.ref[Any]] = []

    def write() -> None:
        db = connections["default"]
        seen.append(weakref.ref(db))
        recorder_module.upsert(str(uuid.uuid4()), row(RunStatus.SUCCEEDED))
        db.close()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    del thread
    gc.collect()
    assert seen and seen[0]() is None
