"""Celery's chain, group and chord of taskkit tasks, on a real worker of each broker.

Every step is a taskkit run: its row is read back, not Celery's result. Only the
chord needs a result backend: Celery's Redis one, or taskkit's run table, on a
worker of its own.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from io import StringIO
from typing import Any, cast

import pytest
import redis
from celery import chain, chord, group
from django.core.management import call_command
from kombu import Queue

import taskkit
from taskkit import queues
from taskkit.models import Cancellation, KnownQueue, RunStatus, TaskRun

from ..apps.nested.tasks.echo.count import COUNTS_URL
from .conftest import Broker, current, make_app, start_worker, stop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]
TIMEOUT = 60
#: The chord tests' result backend (keys are run ids: no test shares one), from
#: ``TASKKIT_TEST_RESULTS_REDIS_URL``.
RESULTS_URL = os.environ.get("TASKKIT_TEST_RESULTS_REDIS_URL", "redis://127.0.0.1:6379/10")
#: No worker consumes it: a step sent there waits, to be looked at and deleted.
PARKED = "canvas-parked"
CHORDS = "canvas-chords"

add = taskkit.get_task("canvas:add")


def run_id(signature: Any) -> str:
    """The run id of a step: the Celery task id its signature carries."""
    return str(signature.id)


def outcome(signature: Any) -> Any:
    """The result taskkit records for the run of ``signature``."""
    return taskkit.RunHandle(run_id(signature), signature.task, "").result(timeout=TIMEOUT)


def test_a_chain_hands_each_result_to_the_next_step(broker: Broker) -> None:
    steps = [add.s({"n": 1}), add.s({"n": 2}), add.s({"n": 3})]
    chain(*steps).apply_async()
    final = outcome(steps[-1])
    assert (final["total"], final["path"]) == (6, [1, 2, 3])
    assert final["previous"] == outcome(steps[1]) and final["chained"] is True
    first = outcome(steps[0])
    assert (first["chained"], first["previous"]) == (False, None)
    rows = TaskRun.objects.in_bulk([s.id for s in steps])
    assert [rows[uuid.UUID(s.id)].status for s in steps] == [RunStatus.SUCCEEDED] * 3
    assert [rows[uuid.UUID(s.id)].payload for s in steps] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_an_immutable_step_ignores_the_previous_result(broker: Broker) -> None:
    steps = [add.s({"n": 1}), add.si({"n": 5})]
    chain(*steps).apply_async()
    last = outcome(steps[-1])
    assert (last["total"], last["chained"]) == (5, False)


def test_a_group_runs_every_member_as_a_run(broker: Broker) -> None:
    members = [add.s({"n": n}) for n in range(6)]
    group(members).apply_async()
    assert [outcome(m)["total"] for m in members] == list(range(6))


def test_a_group_after_a_step_hands_each_member_the_step_result(broker: Broker) -> None:
    members = [add.s({"n": 10}), add.s({"n": 20})]
    chain(add.s({"n": 1}), group(members)).apply_async()
    assert [outcome(m)["total"] for m in members] == [11, 21]


@pytest.fixture(params=["redis", "run table"])
def chords(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[None]:
    """A worker on its own queue and an app, with Celery's Redis result backend or with the
    one taskkit gives an app that names none (the run table)."""
    redis_backend = request.param == "redis"
    if redis_backend:
        monkeypatch.setenv("TASKKIT_TEST_RESULT_BACKEND", RESULTS_URL)
    own = {"result_backend": RESULTS_URL} if redis_backend else {}
    app = make_app(f"taskkit-chords-{broker.name}", broker.url, **own, **broker.options)
    process = start_worker(broker, "chords", queues=(CHORDS,))
    try:
        with current(app):
            yield
    finally:
        stop(process)
        if redis_backend:
            cast(Any, app.backend).result_consumer.stop()  # app.close() leaves its subscription
        app.close()


@pytest.mark.usefixtures("chords")
def test_a_chord_hands_the_header_results_to_its_body(broker: Broker) -> None:
    header = [add.s({"n": n}, queue=CHORDS) for n in (1, 2, 3)]
    body = taskkit.get_task("canvas:total").s(queue=CHORDS)
    chord(header)(body)
    assert outcome(body) == {"total": 6, "parts": 3}
    assert [outcome(h)["total"] for h in header] == [1, 2, 3]


@pytest.mark.usefixtures("chords")
def test_a_chord_waits_for_a_header_step_retried_by_its_policy(broker: Broker) -> None:
    flaky = taskkit.get_task("canvas:flaky").s({"n": 2, "succeed_on": 2}, queue=CHORDS)
    header = [add.s({"n": 1}, queue=CHORDS), flaky, add.s({"n": 3}, queue=CHORDS)]
    body = taskkit.get_task("canvas:total").s(queue=CHORDS)
    chord(header)(body)
    assert outcome(body) == {"total": 6, "parts": 3}
    assert taskkit.get_run(run_id(flaky)).attempt == 2


@pytest.fixture
def fail_key() -> Iterator[str]:
    """A Redis key that makes ``canvas:add`` fail while it exists."""
    key = f"canvas-fail-{uuid.uuid4().hex}"
    with redis.Redis.from_url(COUNTS_URL) as client:
        client.set(key, 1)
        yield key
        client.delete(key)


@pytest.mark.parametrize("chords", ["run table"], indirect=True)
@pytest.mark.usefixtures("chords")
def test_a_chord_whose_header_fails_fails_its_body(broker: Broker, fail_key: str) -> None:
    """Celery never sends the body: on the run table it is recorded failed with Celery's
    ChordError, so its handle and its AsyncResult end instead of waiting forever. (Celery's
    Redis backend keeps that failure in Redis: the body's AsyncResult says so, its run has
    no row.)"""
    header = [add.s({"n": 1}, queue=CHORDS), add.s({"n": 2, "fail_key": fail_key}, queue=CHORDS)]
    body = taskkit.get_task("canvas:total").s(queue=CHORDS)
    result = chord(header)(body)
    with pytest.raises(taskkit.RunFailed, match="step 2 fails"):
        outcome(header[1])
    with pytest.raises(taskkit.RunFailed, match="ChordError"):
        outcome(body)
    assert result.status == "FAILURE"
    row = TaskRun.objects.get(pk=run_id(body))
    assert (row.name, row.queue, row.payload) == ("canvas:total", CHORDS, {})
    assert row.history[-1]["exception"] == "celery.exceptions.ChordError"


def test_a_failed_step_is_recorded_and_its_retry_goes_on_with_the_chain(
    broker: Broker, fail_key: str
) -> None:
    steps = [add.s({"n": 1}), add.s({"n": 2, "fail_key": fail_key}), add.s({"n": 3})]
    chain(*steps).apply_async()
    with pytest.raises(taskkit.RunFailed, match="step 2 fails"):
        outcome(steps[1])
    assert not TaskRun.objects.filter(pk=run_id(steps[2])).exists()  # Celery stopped the chain
    with redis.Redis.from_url(COUNTS_URL) as client:
        client.delete(fail_key)
    call_command("taskqueue", "retry-failed", run_id(steps[1]), stdout=StringIO())
    assert outcome(steps[1])["previous"] == outcome(steps[0])  # the same previous result
    assert outcome(steps[2])["path"] == [1, 2, 3]
    assert len(taskkit.get_run(run_id(steps[1])).history) == 1


def test_a_step_retried_by_its_retry_policy_goes_on_with_the_chain(broker: Broker) -> None:
    flaky = taskkit.get_task("canvas:flaky").s({"n": 2, "succeed_on": 2})
    steps = [add.s({"n": 1}), flaky, add.s({"n": 3})]
    chain(*steps).apply_async()
    assert outcome(steps[2])["path"] == [1, 2, 3]
    run = taskkit.get_run(run_id(flaky))
    assert (run.attempt, [h["attempt"] for h in run.history]) == (2, [1])


@pytest.fixture
def parked(broker: Broker) -> Iterator[str]:
    KnownQueue.objects.get_or_create(name=PARKED)
    with broker.app.connection_for_write() as connection:
        bound = Queue(PARKED).bind(connection.default_channel)
        bound.declare()
        bound.purge()
    yield PARKED
    with broker.app.connection_for_write() as connection:
        Queue(PARKED).bind(connection.default_channel).purge()


def test_a_queued_step_is_listed_and_deletable(broker: Broker, parked: str) -> None:
    waiting = add.s({"n": 2}, queue=parked)
    steps = [add.s({"n": 1}), waiting]
    chain(*steps).apply_async()
    outcome(steps[0])
    if broker.name == "rabbitmq":  # AMQP shows no message without taking it
        assert queues.delete_run(run_id(waiting)) is True
        assert Cancellation.objects.filter(run_id=waiting.id).exists()  # workers skip it
        return
    listed = queues.list(parked)
    for _ in range(100):  # the worker sends the next step once the first has finished
        if listed:
            break
        time.sleep(0.1)
        listed = queues.list(parked)
    assert [(m.run_id, m.name, m.payload) for m in listed] == [(waiting.id, "canvas:add", {"n": 2})]
    assert queues.delete_run(run_id(waiting)) is True
    assert queues.list(parked) == []
