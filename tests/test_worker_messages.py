"""The worker side in process: messages whose task is gone or whose payload no longer fits."""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery.exceptions import Ignore, Retry
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import taskkit
from taskkit.bridge.work import delivery
from taskkit.bridge.work import run as run_module
from taskkit.bridge.work.cancellations import cancelled
from taskkit.bridge.work.run import run_message
from taskkit.exceptions import InvalidMessage, WorkerLost
from taskkit.models import RunStatus, TaskRun
from taskkit.runner import call
from tests.apps.nested.tasks.echo.count import COUNTS_URL

pytestmark = pytest.mark.django_db(transaction=True)  # the worker closes old connections


def message(name: str) -> Any:
    run_id = str(uuid.uuid4())
    request = SimpleNamespace(id=run_id, hostname="w1@host", delivery_info={})
    return SimpleNamespace(name=name, request=request), run_id


def test_a_message_for_a_task_that_left_the_code_fails_its_row() -> None:
    ctask, run_id = message("gone:task")
    TaskRun.objects.create(id=run_id, name="gone:task", status=RunStatus.QUEUED)
    with pytest.raises(taskkit.TaskNotFound):
        run_message(ctask, {}, {"run_id": run_id})
    row = TaskRun.objects.get(pk=run_id)
    assert row.status == RunStatus.FAILED and "Unknown task 'gone:task'" in row.error


def test_a_payload_the_schema_now_refuses_fails_its_row(monkeypatch: pytest.MonkeyPatch) -> None:
    strict = taskkit.get_task("echo:payload").using(name="strict:now", schema={"n": int})
    monkeypatch.setitem(taskkit.registry.current().tasks, "strict:now", strict)
    ctask, run_id = message("strict:now")
    TaskRun.objects.create(id=run_id, name="strict:now", status=RunStatus.QUEUED)
    with pytest.raises(taskkit.InvalidPayload):
        run_message(ctask, {"n": "x"}, {"run_id": run_id, "stored": True})
    assert TaskRun.objects.get(pk=run_id).status == RunStatus.FAILED


def test_a_run_runs_and_records_in_process() -> None:
    ctask, run_id = message("echo:payload")
    run_message(ctask, {"a": 1}, {"run_id": run_id, "queue": "q", "attempt": 1})
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.result, row.queue, row.worker) == (
        RunStatus.SUCCEEDED,
        {"a": 1},
        "q",
        "w1@host",
    )


def test_a_second_delivery_of_a_finished_attempt_is_skipped() -> None:
    ctask, run_id = message("echo:payload")
    TaskRun.objects.create(id=run_id, name="echo:payload", status=RunStatus.QUEUED)
    context = {"run_id": run_id, "stored": True, "attempt": 1}
    run_message(ctask, {"a": 1}, context)
    first = TaskRun.objects.get(pk=run_id)
    assert first.status == RunStatus.SUCCEEDED
    with pytest.raises(Ignore) as ended:  # the same attempt sent twice: Celery stores nothing
        run_message(ctask, {"a": 2}, context)
    assert type(ended.value) is Ignore  # not revoked either
    again = TaskRun.objects.get(pk=run_id)
    assert (again.result, again.finished_at) == (first.result, first.finished_at)
    TaskRun.objects.filter(pk=run_id).update(status=RunStatus.QUEUED, attempt=2)
    run_message(ctask, {"a": 3}, {**context, "attempt": 2})  # a later attempt still runs
    assert TaskRun.objects.get(pk=run_id).result == {"a": 3}


def test_a_message_with_other_arguments_is_recorded_as_failed_with_a_clear_error() -> None:
    """``celery call echo:payload --kwargs '{"a": 1}'``: no TypeError naming an internal function."""
    ctask, run_id = message("echo:payload")
    with pytest.raises(InvalidMessage, match="carries a payload and a context, not a"):
        run_message(ctask, a=1)
    row = TaskRun.objects.get(pk=run_id)
    assert (row.name, row.status, row.payload) == ("echo:payload", RunStatus.FAILED, {"a": 1})
    assert '--kwargs \'{"payload"' in row.error


def test_positional_arguments_beyond_payload_and_context_are_refused() -> None:
    ctask, run_id = message("echo:payload")
    with pytest.raises(InvalidMessage, match="3 positional argument"):
        run_message(ctask, {}, {}, "extra")
    assert TaskRun.objects.get(pk=run_id).status == RunStatus.FAILED


def test_celery_call_with_a_payload_keyword_runs() -> None:
    ctask, run_id = message("echo:payload")
    run_message(ctask, payload={"a": 2})
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.result) == (RunStatus.SUCCEEDED, {"a": 2})


def test_an_unknown_task_without_a_row_is_recorded_as_failed() -> None:
    ctask, run_id = message("never:existed")
    with pytest.raises(taskkit.TaskNotFound):
        run_message(ctask, {"x": 1}, {"run_id": run_id})
    row = TaskRun.objects.get(pk=run_id)
    assert (row.name, row.status, row.payload) == ("never:existed", RunStatus.FAILED, {"x": 1})


def test_a_failed_attempt_records_the_importable_exception_class() -> None:
    from django.utils import timezone

    from taskkit.bridge.work.outcome import failed_attempt

    fields = failed_attempt(None, 1, taskkit.RunTimeout("slow"), [], timezone.now())
    (entry,) = fields["history"]
    assert (entry["error"], entry["exception"]) == (
        "RunTimeout: slow",
        "taskkit.exceptions.RunTimeout",
    )


@pytest.mark.parametrize(("name", "runs"), [("crash:plain", 0), ("crash:idempotent", 1)])
@pytest.mark.parametrize("how", ["stored", "redelivered"])
def test_an_attempt_that_started_runs_again_only_if_the_task_is_idempotent(
    name: str, runs: int, how: str
) -> None:
    """A scheduler resends a batch, or a broker restores a message, while the run is running."""
    ctask, run_id = message(name)
    TaskRun.objects.create(id=run_id, name=name, status=RunStatus.RUNNING, worker="w0@host")
    key = f"again:{uuid.uuid4()}"
    if how == "redelivered":
        ctask.request.delivery_info = {"redelivered": True}
    context = {"run_id": run_id, "attempt": 1, "stored": how == "stored"}
    with contextlib.nullcontext() if runs else pytest.raises(Ignore):
        run_message(ctask, {"key": key, "seconds": 0}, context)
    counts = redis.Redis.from_url(COUNTS_URL)
    try:
        assert counts.llen(key) == 2 * runs  # start and done lines
    finally:
        counts.delete(key)
        counts.close()
    row = TaskRun.objects.get(pk=run_id)
    assert row.status == (RunStatus.SUCCEEDED if runs else RunStatus.RUNNING)
    assert row.worker == ("w1@host" if runs else "w0@host")


@pytest.mark.parametrize("how", ["stored", "redelivered"])
def test_an_idempotent_attempt_restarted_after_lost_workers_is_failed_at_its_fourth_start(
    how: str,
) -> None:
    """Each restart of a started attempt is counted on its row; past MAX_STARTS it fails."""
    ctask, run_id = message("crash:idempotent")
    TaskRun.objects.create(
        id=run_id, name="crash:idempotent", status=RunStatus.RUNNING, worker="w0@host"
    )
    if how == "redelivered":
        ctask.request.delivery_info = {"redelivered": True}
    context = {"run_id": run_id, "attempt": 1, "stored": how == "stored"}
    key = f"restarts:{uuid.uuid4()}"
    counts = redis.Redis.from_url(COUNTS_URL)
    try:
        for restart in range(1, delivery.MAX_STARTS):
            # a run started again, and its worker lost again: its row says running
            run_message(ctask, {"key": key, "seconds": 0}, context)
            assert TaskRun.objects.get(pk=run_id).restarts == restart
            TaskRun.objects.filter(pk=run_id).update(status=RunStatus.RUNNING)
        with pytest.raises(WorkerLost, match=f"each of its {delivery.MAX_STARTS} starts"):
            run_message(ctask, {"key": key, "seconds": 0}, context)
        assert counts.llen(key) == 2 * (delivery.MAX_STARTS - 1)  # the last one never ran
    finally:
        counts.delete(key)
        counts.close()
    row = TaskRun.objects.get(pk=run_id)
    assert row.status == RunStatus.FAILED
    assert [entry["exception"] for entry in row.history] == ["taskkit.exceptions.WorkerLost"]


def test_a_retry_after_lost_workers_starts_with_no_restarts_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attempt that failed for its lost workers is retried as its policy says, afresh."""
    ctask, run_id = message("crash:idempotent")
    TaskRun.objects.create(
        id=run_id,
        name="crash:idempotent",
        status=RunStatus.RUNNING,
        restarts=delivery.MAX_STARTS - 1,
    )
    ctask.request.delivery_info = {"redelivered": True}
    retried = taskkit.task(name="crash:idempotent", idempotent=True, retry=2)(_raise_text)
    monkeypatch.setitem(taskkit.registry.current().tasks, "crash:idempotent", retried)
    with pytest.raises(Retry):
        run_message(ctask, {"key": "unused", "seconds": 0}, {"run_id": run_id, "attempt": 1})
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.attempt, row.restarts) == (RunStatus.SCHEDULED, 2, 0)


def test_of_two_deliveries_of_a_stored_attempt_only_the_one_that_claims_its_row_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other delivery claims the row just before ours: ours finds it taken and stops."""
    ctask, run_id = message("echo:payload")
    TaskRun.objects.create(id=run_id, name="echo:payload", status=RunStatus.QUEUED)
    context = {"run_id": run_id, "stored": True, "attempt": 1}
    real_token, real_started = delivery.claim_token, delivery.started_already
    calls: list[bool] = []

    def other_claims_first(fields: dict[str, Any]) -> Any:
        TaskRun.objects.filter(pk=run_id).update(status=RunStatus.RUNNING, worker="w2@host")
        return real_token(fields)

    def started_already(task: Any, ctx: Any) -> Any:
        ended = real_started(task, ctx)
        calls.append(ended is not None)
        return ended

    monkeypatch.setattr(run_module, "claim_token", other_claims_first)
    monkeypatch.setattr(delivery, "started_already", started_already)
    with pytest.raises(Ignore):
        run_message(ctask, {"a": 1}, context)
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.worker, row.result) == (RunStatus.RUNNING, "w2@host", None)
    assert calls == [True]  # read once, after the lost claim


def test_a_stored_run_is_claimed_without_reading_its_row_first() -> None:
    """The usual delivery of a stored run: its claim is the first statement on the run table
    (the reads that explain a lost claim cost two round trips per run otherwise)."""
    ctask, run_id = message("echo:payload")
    TaskRun.objects.create(id=run_id, name="echo:payload", status=RunStatus.QUEUED)
    context = {"run_id": run_id, "stored": True, "attempt": 1}
    with CaptureQueriesContext(connection) as queries:
        run_message(ctask, {"a": 1}, context)
    on_runs = [q["sql"] for q in queries if "taskkit_taskrun" in q["sql"]]
    assert on_runs[0].startswith("UPDATE"), on_runs
    assert not any(sql.startswith("SELECT") for sql in on_runs), on_runs
    assert TaskRun.objects.get(pk=run_id).status == RunStatus.SUCCEEDED


def test_a_claim_whose_answer_was_lost_is_this_deliverys_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The claim reached the database but the connection was cut before its answer: the step
    is tried again (or the message handed back carrying the claim) and must still run."""
    ctask, run_id = message("echo:payload")
    TaskRun.objects.create(id=run_id, name="echo:payload", status=RunStatus.QUEUED)
    cuts = [OperationalError("server closed the connection unexpectedly")]

    def cut_after_claim(*args: Any) -> Any:
        found = cancelled(*args)
        if cuts:  # claim the row as this step would, then lose the answer
            claim = TaskRun.objects.filter(pk=run_id)
            claim.update(status=RunStatus.RUNNING, started_at=delivery.claim_token(context))
            raise cuts.pop()
        return found

    context = {"run_id": run_id, "stored": True, "attempt": 1, "claim": timezone.now().isoformat()}
    monkeypatch.setattr(delivery, "cancelled", cut_after_claim)
    run_message(ctask, {"a": 1}, context)
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.result) == (RunStatus.SUCCEEDED, {"a": 1})


def test_a_track_all_run_writes_its_row_twice_the_claim_and_its_end() -> None:
    """The claim writes the whole ``running`` row: no third statement between it and the end."""
    ctask, run_id = message("track:outbox")
    TaskRun.objects.create(id=run_id, name="track:outbox", status=RunStatus.QUEUED)
    context = {"run_id": run_id, "stored": True, "attempt": 1, "queue": "q"}
    with CaptureQueriesContext(connection) as queries:
        run_message(ctask, {"a": 1}, context)
    on_runs = [q["sql"].split(" ", 1)[0] for q in queries if "taskkit_taskrun" in q["sql"]]
    assert on_runs == ["UPDATE", "INSERT"]
    assert TaskRun.objects.get(pk=run_id).status == RunStatus.SUCCEEDED


def test_a_claimed_row_is_the_running_row_while_the_task_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the claim writes is what a ``running`` row held: the run's fields, its worker and
    its start, which the finished row keeps."""
    ctask, run_id = message("track:outbox")
    TaskRun.objects.create(id=run_id, name="track:outbox", status=RunStatus.QUEUED, queue="")
    seen: list[TaskRun] = []

    def look_then_call(*args: Any) -> Any:
        seen.append(TaskRun.objects.get(pk=run_id))
        return call(*args)

    monkeypatch.setattr(run_module, "call", look_then_call)
    context = {"run_id": run_id, "stored": True, "attempt": 1, "queue": "q", "source": "beat"}
    run_message(ctask, {"a": 1}, context)
    (running,) = seen
    assert (running.status, running.worker, running.queue, running.source, running.payload) == (
        RunStatus.RUNNING,
        "w1@host",
        "q",
        "beat",
        {"a": 1},
    )
    done = TaskRun.objects.get(pk=run_id)
    assert running.started_at is not None and done.started_at == running.started_at


def test_a_claim_with_a_handed_back_token_still_writes_the_runs_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message handed back carries its first try's claim time: the row's start is not that."""
    ctask, run_id = message("track:outbox")
    TaskRun.objects.create(id=run_id, name="track:outbox", status=RunStatus.QUEUED)
    then = timezone.now() - timedelta(seconds=40)
    context = {"run_id": run_id, "stored": True, "attempt": 1, "claim": then.isoformat()}
    run_message(ctask, {"a": 1}, context)
    row = TaskRun.objects.get(pk=run_id)
    assert row.status == RunStatus.SUCCEEDED and row.started_at is not None
    assert row.started_at > then + timedelta(seconds=30)


@pytest.mark.parametrize(
    "context",
    [
        {"attempt": "x"},
        {"attempt": float("inf")},
        {"attempt": None},
        {"attempt": 0},
        {"attempt": -1},
        {"attempt": 2**31},
        {"source": "nowhere"},
        {"scheduled_time": "tomorrow"},
        {"scheduled_time": 5},
    ],
)
def test_a_context_field_of_the_wrong_kind_fails_its_row_with_a_clear_error(
    context: dict[str, Any],
) -> None:
    """A hand-made message's context is checked like its payload: the run ends failed, on the
    record, not in a worker's log only."""
    ctask, run_id = message("echo:payload")
    with pytest.raises(InvalidMessage, match="context"):
        run_message(ctask, {"a": 1}, {"run_id": run_id, **context})
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.payload) == (RunStatus.FAILED, {"a": 1})
    assert str(next(iter(context))) in row.error


def test_a_run_id_that_is_no_uuid_fails_a_row_under_an_id_made_of_it() -> None:
    from taskkit.quarantine import item_id

    ctask, _ = message("echo:payload")
    with pytest.raises(InvalidMessage, match="run_id of the wrong kind"):
        run_message(ctask, {"a": 1}, {"run_id": "not-a-uuid"})
    row = TaskRun.objects.get(pk=item_id(b"not-a-uuid"))
    assert (row.status, row.payload) == (RunStatus.FAILED, {"a": 1})


@pytest.mark.parametrize("payload", [{"a": "\ud800"}, {"\ud800": 1}])
def test_a_refused_run_whose_payload_the_database_refuses_is_still_recorded(
    payload: dict[str, Any],
) -> None:
    """PostgreSQL's ``jsonb`` refuses a lone surrogate: the run's row is written without it."""
    ctask, run_id = message("echo:payload")
    with pytest.raises(taskkit.InvalidPayload, match="lone surrogate"):
        run_message(ctask, payload, {"run_id": run_id})
    row = TaskRun.objects.get(pk=run_id)
    assert row.status == RunStatus.FAILED and "lone surrogate" in row.error


def registered(monkeypatch: pytest.MonkeyPatch, name: str, handler: Any) -> None:
    """``handler`` as the task ``name``, for this test only."""
    monkeypatch.setitem(taskkit.registry.current().tasks, name, taskkit.task(name=name)(handler))


def _raise_text(event: taskkit.TaskEvent) -> None:
    raise ValueError(event.payload["text"])


def _return_text(event: taskkit.TaskEvent) -> dict[str, str]:
    return {"text": str(event.payload["text"]).replace("_", "\x00")}


@pytest.mark.parametrize("text", ["NUL \x00 in it", "a lone \ud800 in it"])
def test_an_error_the_database_refuses_still_fails_its_run(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """PostgreSQL's text refuses NUL, and no driver encodes a lone surrogate: the run is
    recorded failed with its error's text escaped, not left running."""
    registered(monkeypatch, "raise:text", _raise_text)
    monkeypatch.setattr(run_module, "received_payload", lambda payload, **_: payload)
    ctask, run_id = message("raise:text")
    with pytest.raises(ValueError):
        run_message(ctask, {"text": text}, {"run_id": run_id})
    row = TaskRun.objects.get(pk=run_id)
    assert row.status == RunStatus.FAILED and row.error.startswith("ValueError: ")


def test_a_result_the_database_refuses_still_ends_its_run(monkeypatch: pytest.MonkeyPatch) -> None:
    registered(monkeypatch, "return:text", _return_text)
    ctask, run_id = message("return:text")
    assert run_message(ctask, {"text": "a_b"}, {"run_id": run_id}) == {"text": "a\x00b"}
    row = TaskRun.objects.get(pk=run_id)
    assert row.status == RunStatus.SUCCEEDED
    if connection.vendor == "postgresql":  # jsonb refuses it; SQLite keeps it
        assert row.result is None and "result not stored" in row.error


def test_a_carried_task_name_and_queue_too_long_for_their_columns_are_recorded_cut() -> None:
    """PostgreSQL refuses text past a column's length (SQLite keeps it): the failed run's
    name and queue are cut to fit, and its payload is kept."""
    from taskkit.bridge.carrier import CARRIER

    ctask, run_id = message(CARRIER)
    ctask.request.delivery_info = {"routing_key": "q" * 300}
    with pytest.raises(taskkit.TaskNotFound):
        run_message(ctask, {"a": 1}, {"run_id": run_id, "task": "gone:" + "x" * 300})
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.payload) == (RunStatus.FAILED, {"a": 1})
    assert (len(row.name), len(row.queue)) == (200, 200)
    assert row.name.startswith("gone:x") and row.name.endswith("…")


def test_a_carried_task_name_no_database_stores_is_recorded_escaped() -> None:
    from taskkit.bridge.carrier import CARRIER

    ctask, run_id = message(CARRIER)
    with pytest.raises(taskkit.TaskNotFound):
        run_message(ctask, {"a": 1}, {"run_id": run_id, "task": "gone\ud800"})
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.name, row.payload) == (RunStatus.FAILED, "gone\\ud800", {"a": 1})


@pytest.mark.parametrize("sent_id", ["order-17", 17, None, ""])
def test_a_refused_message_whose_id_is_no_uuid_is_still_recorded(sent_id: Any) -> None:
    from taskkit.bridge.work.request import record_refused

    before = set(TaskRun.objects.values_list("pk", flat=True))
    record_refused(sent_id, "echo:payload", {"routing_key": "q"}, "w1@host", "Not a task call.")
    (row,) = TaskRun.objects.exclude(pk__in=before)
    assert (row.status, row.queue, row.error) == (
        RunStatus.FAILED,
        "q",
        "InvalidMessage: Not a task call.",
    )
    if sent_id:
        from taskkit.quarantine import item_id

        assert str(row.pk) == item_id(str(sent_id).encode())


def _large_progress(event: taskkit.TaskEvent) -> None:
    event.context.set_progress(3 * 10**9, 6 * 10**9)  # the bytes of a 6 GB file, half read


def test_progress_past_what_a_column_holds_is_stored_scaled_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL's integer column refused it (``integer out of range``), failing the run."""
    from taskkit.bridge.work.message import COLUMN_MAX

    registered(monkeypatch, "progress:large", _large_progress)
    ctask, run_id = message("progress:large")
    run_message(ctask, {}, {"run_id": run_id})
    row = TaskRun.objects.get(pk=run_id)
    assert row.status == RunStatus.SUCCEEDED
    assert (row.progress_done, row.progress_total) == (COLUMN_MAX // 2, COLUMN_MAX)
