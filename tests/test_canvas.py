"""Tasks as Celery signatures: what ``task.s()`` builds, and chained steps on the worker side."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery, chain, chord, current_app
from celery.backends.base import DisabledBackend
from celery.exceptions import Retry

import taskkit
from taskkit import Lock
from taskkit.bridge.locks import acquire, lock_key, release
from taskkit.bridge.send.celery_message import apply
from taskkit.bridge.send.publish import stored_run
from taskkit.bridge.work.run import run_message
from taskkit.exceptions import NotChainable
from taskkit.models import RunStatus, TaskRun
from tests.integration.conftest import current, make_app


def _reset_router() -> None:  # Celery caches the prepared routes and the router
    current_app.amqp.flush_routes()
    current_app.amqp.__dict__.pop("router", None)


@pytest.mark.django_db(transaction=True)
def test_a_signature_carries_the_message_enqueue_sends(sent: list[dict[str, Any]]) -> None:
    signature = taskkit.get_task("db:migrate").s({"step": 1})
    handle = taskkit.get_task("db:migrate").enqueue({"step": 1})
    enqueued = sent[0]
    kwargs = dict(signature.kwargs)
    context = kwargs.pop("context")
    assert signature.task == "db:migrate" and signature.args == ()
    assert kwargs == {"payload": {"step": 1}} == {"payload": enqueued["kwargs"]["payload"]}
    assert context["run_id"] == signature.id == signature.options["task_id"] != handle.id
    assert {k: v for k, v in context.items() if k not in ("run_id", "enqueued_at")} == {
        "queue": "maintenance",
        "source": "worker",
        "attempt": 1,
    }
    options = signature.options
    assert (options["queue"], options["serializer"], options["kwargsrepr"]) == (
        enqueued["queue"],
        "json",
        enqueued["kwargsrepr"],
    )
    assert not signature.immutable


def test_each_signature_is_a_run_of_its_own() -> None:
    task = taskkit.get_task("echo:payload")
    assert len({task.s().id, task.s().id, task.signature().id}) == 3


def test_queue_routes_and_priority_are_honoured() -> None:
    task = taskkit.get_task("db:migrate")
    assert task.s(queue="special").options["queue"] == "special"
    assert task.signature(priority=7).options["priority"] == 7
    assert "priority" not in task.s().options
    current_app.conf.task_routes = {"db:*": {"queue": "routed"}}
    try:
        _reset_router()
        routed = task.s()
        assert routed.options["queue"] == routed.kwargs["context"]["queue"] == "routed"
        assert task.s(queue="mine").options["queue"] == "mine"
    finally:
        current_app.conf.task_routes = None
        _reset_router()


def test_si_and_immutable_make_steps_that_ignore_the_previous_result() -> None:
    task = taskkit.get_task("echo:payload")
    assert task.si({"a": 1}).immutable and task.signature(immutable=True).immutable


def test_a_payload_the_task_refuses_raises_when_the_signature_is_built() -> None:
    strict = taskkit.get_task("echo:payload").using(name="strict:canvas", schema={"n": int})
    with pytest.raises(taskkit.InvalidPayload):
        strict.s({"n": "x"})
    with pytest.raises(taskkit.InvalidPayload):
        taskkit.get_task("echo:payload").s(["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue"):
        strict.s({"n": 1}, queue="a/b")


def test_a_task_of_every_worker_is_no_step() -> None:
    with pytest.raises(NotChainable, match="scope='all'"):
        taskkit.get_task("broadcast:ping").s()


def message(name: str, **request: Any) -> Any:
    run_id = str(uuid.uuid4())
    fields = {"id": run_id, "hostname": "w1@host", "delivery_info": {}, **request}
    return SimpleNamespace(name=name, request=SimpleNamespace(**fields)), run_id


@pytest.mark.django_db(transaction=True)
def test_a_chained_message_hands_the_previous_result_to_the_task() -> None:
    ctask, run_id = message("canvas:add")
    context = {"run_id": run_id, "attempt": 1}
    previous = {"total": 5, "path": [5]}
    result = run_message(ctask, previous, payload={"n": 2}, context=context)
    assert result == {"total": 7, "path": [5, 2], "chained": True, "previous": previous}
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.result) == (RunStatus.SUCCEEDED, result)
    assert row.canvas is None  # kept only for a step sent again


@pytest.mark.django_db(transaction=True)
def test_a_previous_result_of_none_is_told_from_none_at_all() -> None:
    ctask, run_id = message("canvas:add")
    chained = run_message(ctask, None, payload={"n": 1}, context={"run_id": run_id})
    ctask, run_id = message("canvas:add")
    alone = run_message(ctask, payload={"n": 1}, context={"run_id": run_id})
    assert (chained["chained"], chained["previous"]) == (True, None)
    assert (alone["chained"], alone["previous"]) == (False, None)
    assert TaskRun.objects.get(pk=run_id).canvas is None


@pytest.mark.django_db(transaction=True)
def test_a_step_whose_retry_is_scheduled_stops_the_chain_and_keeps_it_for_the_retry() -> None:
    rest = [json.loads(json.dumps(taskkit.get_task("canvas:add").s({"n": 10})))]  # as received
    ctask, run_id = message("canvas:flaky", chain=rest, callbacks=None, chord=None, root_id="r")
    with pytest.raises(Retry):  # reported as a retry; Celery sends nothing after it
        run_message(
            ctask, {"total": 1}, payload={"n": 2, "succeed_on": 2}, context={"run_id": run_id}
        )
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.attempt) == (RunStatus.SCHEDULED, 2)
    assert row.canvas == {"args": [{"total": 1}], "options": {"chain": rest, "root_id": "r"}}
    captured: list[dict[str, Any]] = []

    class Recording:
        def apply_async(self, **options: Any) -> None:
            captured.append(options)

    app = SimpleNamespace(tasks={"canvas:flaky": Recording()})
    run = stored_run(row)
    apply(app, None, run, {"queue": run.queue})  # type: ignore[arg-type]
    (sent,) = captured
    assert sent["args"] == ({"total": 1},) and sent["chain"] == rest and sent["root_id"] == "r"
    assert sent["task_id"] == run_id and sent["kwargs"]["context"]["attempt"] == 2


@pytest.mark.django_db(transaction=True)
def test_a_plain_run_whose_retry_is_scheduled_is_reported_as_a_retry() -> None:
    ctask, run_id = message("canvas:flaky", chain=None, callbacks=None, chord=None)
    with pytest.raises(Retry):
        run_message(ctask, payload={"n": 1, "succeed_on": 2}, context={"run_id": run_id})
    assert TaskRun.objects.get(pk=run_id).status == RunStatus.SCHEDULED


@pytest.mark.django_db(transaction=True)
def test_a_chain_applied_in_process_passes_each_result_on_and_records_every_step() -> None:
    add = taskkit.get_task("canvas:add")
    steps = [add.s({"n": 1}), add.s({"n": 2}), add.s({"n": 3})]
    result = chain(*steps).apply()
    assert result.get()["total"] == 6 and result.get()["path"] == [1, 2, 3]
    rows = {str(r.pk): r for r in TaskRun.objects.filter(name="canvas:add")}
    ids = [str(s.id) for s in steps]
    assert set(rows) == set(ids)
    assert [(rows[i].result or {})["total"] for i in ids] == [1, 3, 6]
    assert [rows[i].status for i in ids] == [RunStatus.SUCCEEDED] * 3


@pytest.mark.django_db(transaction=True)
def test_a_step_that_waits_for_its_lock_stops_the_chain_and_keeps_it() -> None:
    task = taskkit.get_task("locks:job")
    key = lock_key(Lock.JOB, task, {"k": 1})
    assert acquire(key, "another run", timedelta(minutes=1)) is None
    rest = [json.loads(json.dumps(taskkit.get_task("canvas:add").s({"n": 1})))]
    ctask, run_id = message("locks:job", chain=rest, callbacks=None, chord=None)
    with pytest.raises(Retry):
        run_message(ctask, [1, 2], payload={"k": 1}, context={"run_id": run_id})
    row = TaskRun.objects.get(pk=run_id)
    assert row.status == RunStatus.SCHEDULED
    assert row.canvas == {"args": [[1, 2]], "options": {"chain": rest}}
    release(key, "another run")


def test_the_app_that_sends_the_steps_confirms_its_publishes() -> None:
    app = make_app("canvas-confirms", "amqp://guest:guest@127.0.0.1:5672//")
    with current(app):
        taskkit.get_task("echo:payload").s()
    assert app.conf.broker_transport_options == {"confirm_publish": True}
    app.close()


def test_a_chord_without_a_result_backend_is_refused_when_sent(
    sent: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project that set ``result_backend = "disabled"`` (taskkit's run table is the default)."""
    monkeypatch.setattr(Celery, "backend", property(lambda app: DisabledBackend(app)))
    add = taskkit.get_task("canvas:add")
    with pytest.raises(NotImplementedError, match="result backend"):
        chord([add.s({"n": 1}), add.s({"n": 2})])(taskkit.get_task("canvas:total").s())
    assert sent == []
