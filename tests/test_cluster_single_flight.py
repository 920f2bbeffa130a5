"""``single_flight="cluster"`` in process: a run that finds an equal run leading follows it.

The leader is played by the test: a lease taken under the flight's key and a
row of the run table. The real workers are in ``tests/reliability``.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery.exceptions import Retry
from django.utils import timezone

import taskkit
from taskkit.bridge.locks import acquire, holder
from taskkit.bridge.work import flight
from taskkit.bridge.work.recorder import recorder
from taskkit.bridge.work.run import run_message
from taskkit.exceptions import RunFailed, RunRevoked, WorkerLost, class_path
from taskkit.models import RunStatus, TaskLock, TaskRun
from tests.apps.nested.tasks.echo.count import COUNTS_URL
from tests.conftest import RevokedIn

pytestmark = pytest.mark.django_db(transaction=True)  # the worker closes old connections


@pytest.fixture(autouse=True)
def short_follow(monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower waits a moment in its slot, not seconds."""
    monkeypatch.setattr(flight, "FOLLOW_FOR", 0.3)


@pytest.fixture
def key() -> Any:
    """The Redis list the task counts its executions in, emptied afterwards."""
    name = f"flight:{uuid.uuid4()}"
    counts = redis.Redis.from_url(COUNTS_URL, decode_responses=True)
    yield name
    counts.delete(name)
    counts.close()


def executions(key: str) -> list[str]:
    with redis.Redis.from_url(COUNTS_URL, decode_responses=True) as counts:
        return [str(line) for line in counts.lrange(key, 0, -1)]


def step(run_id: str, **request: Any) -> Any:
    """A ``flight:shared`` Celery task as a worker hands it over, its request ``request``."""
    fields = {"id": run_id, "hostname": "w1@host", "delivery_info": {}, **request}
    return SimpleNamespace(name="flight:shared", request=SimpleNamespace(**fields))


def deliver(payload: dict[str, Any], run_id: str | None = None, **context: Any) -> str:
    """Run one delivery of a ``flight:shared`` message in this process; return its run id.

    A follower sent again later ends as Celery's ``Retry``, as a run waiting for its
    lock does: no result yet.
    """
    run_id = run_id or str(uuid.uuid4())
    with contextlib.suppress(Retry):
        run_message(step(run_id), payload, {"run_id": run_id, "attempt": 1, **context})
    return run_id


def leading(payload: dict[str, Any], status: RunStatus = RunStatus.RUNNING, **row: Any) -> str:
    """A leader's run on another worker: its lease, and its row."""
    run_id = str(uuid.uuid4())
    task = taskkit.get_task("flight:shared")
    assert acquire(flight.flight_key(task, payload), f"{run_id}#1", flight.LEASE) is None
    TaskRun.objects.create(
        id=run_id, name=task.name, payload=payload, status=status, worker="w2@host", **row
    )
    return run_id


def test_a_follower_takes_the_leaders_result_and_never_runs(key: str) -> None:
    payload = {"key": key}
    leader = leading(payload, RunStatus.SUCCEEDED, result={"ran": "the leader"})
    follower = TaskRun.objects.get(pk=deliver(payload))
    assert (follower.status, follower.result) == (RunStatus.SUCCEEDED, {"ran": "the leader"})
    assert executions(key) == []
    assert TaskRun.objects.get(pk=leader).result == {"ran": "the leader"}


def test_a_follower_of_a_cancelled_leader_is_cancelled_and_revoked_to_celery(key: str) -> None:
    payload = {"key": key}
    leading(payload, RunStatus.CANCELLED, error="Cancelled by an operator.", attempt=1)
    run_id = str(uuid.uuid4())
    ctask = step(run_id)
    ctask.backend = RevokedIn()
    with pytest.raises(RunRevoked):
        run_message(ctask, payload, {"run_id": run_id, "attempt": 1})
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.error) == (RunStatus.CANCELLED, "Cancelled by an operator.")
    assert ctask.backend.revoked == [(run_id, "cancelled")]
    assert executions(key) == []


def test_a_follower_waits_again_then_takes_the_outcome_of_the_leader_it_followed(
    key: str,
) -> None:
    payload = {"key": key}
    leader = leading(payload)
    follower = str(uuid.uuid4())
    with pytest.raises(Retry) as waits:  # the leader still runs: the follower frees its slot
        run_message(step(follower), payload, {"run_id": follower, "attempt": 1})
    row = TaskRun.objects.get(pk=follower)
    assert row.status == RunStatus.SCHEDULED and row.scheduled_for is not None
    assert (waits.value.when, waits.value.exc) == (row.scheduled_for, None)
    assert executions(key) == []

    # the leader ends and lets go of the lease before the follower is sent again
    TaskRun.objects.filter(pk=leader).update(status=RunStatus.SUCCEEDED, result={"ran": 1})
    assert TaskLock.objects.filter(key=f"taskkit:follows:{follower}").exists()
    TaskLock.objects.filter(owner=f"{leader}#1").exclude(key__contains="follows").delete()
    deliver(payload, follower, stored=True)
    row = TaskRun.objects.get(pk=follower)
    assert (row.status, row.result) == (RunStatus.SUCCEEDED, {"ran": 1})
    assert executions(key) == []  # it did not start a flight of its own
    assert not TaskLock.objects.exists()  # nor left its note of whom it follows


def test_a_waiting_follower_has_a_running_row_the_sweep_can_settle(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = {"key": key}
    leading(payload)
    rows: list[tuple[str, str]] = []
    wait_again = flight._wait_again

    def looked(task: Any, ctx: Any, row: Any, leader: str) -> None:
        rows.extend(TaskRun.objects.filter(pk=ctx.run_id).values_list("status", "worker"))
        wait_again(task, ctx, row, leader)

    monkeypatch.setattr(flight, "_wait_again", looked)
    deliver(payload)
    assert rows == [(RunStatus.RUNNING, "w1@host")]


def test_a_follower_takes_over_from_a_leader_whose_lease_expired(key: str) -> None:
    payload = {"key": key, "first": 0}
    leader = leading(payload)
    TaskLock.objects.update(expires_at=timezone.now() - timedelta(seconds=1))  # it stopped renewing
    follower = deliver(payload)
    row = TaskRun.objects.get(pk=follower)
    assert (row.status, row.result) == (RunStatus.SUCCEEDED, {"ran": follower})
    assert executions(key) == [follower]
    assert TaskRun.objects.get(pk=leader).status == RunStatus.RUNNING
    assert not TaskLock.objects.exists()  # the new leader let go once its row was written


def test_a_leader_failed_as_lost_is_taken_over_not_followed(key: str) -> None:
    payload = {"key": key, "first": 0}
    leader = leading(payload)
    follower = deliver(payload)  # it follows, and waits again
    # the leader's worker is lost: the sweep fails its run, and its lease expires
    lost = {"attempt": 1, "error": "WorkerLost: gone", "exception": class_path(WorkerLost(""))}
    TaskRun.objects.filter(pk=leader).update(
        status=RunStatus.FAILED, error="WorkerLost: gone", history=[lost]
    )
    TaskLock.objects.exclude(key__contains="follows").delete()
    deliver(payload, follower, stored=True)
    assert TaskRun.objects.get(pk=follower).status == RunStatus.SUCCEEDED
    assert executions(key) == [follower]


def test_a_failure_is_shared_and_retried_by_the_followers_policy(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    retried = taskkit.get_task("flight:shared").using(retry=2)
    monkeypatch.setitem(taskkit.registry.current().tasks, "flight:shared", retried)
    payload = {"key": key}
    failure = {"attempt": 1, "error": "ValueError: no", "exception": "builtins.ValueError"}
    leading(
        payload, RunStatus.FAILED, error="ValueError: no", traceback="Traceback…", history=[failure]
    )
    follower = str(uuid.uuid4())
    with pytest.raises(Retry) as retries:
        run_message(step(follower), payload, {"run_id": follower, "attempt": 1})
    row = TaskRun.objects.get(pk=follower)
    assert retries.value.when == row.scheduled_for
    assert "failed: ValueError: no" in str(retries.value.exc)  # the leader's, as Celery logs it
    assert (row.status, row.attempt, row.error, row.traceback) == (
        RunStatus.SCHEDULED,
        2,
        "ValueError: no",
        "Traceback…",
    )
    assert row.history[0]["exception"] == "builtins.ValueError"
    assert executions(key) == []


def test_a_failure_of_a_class_not_loaded_here_is_not_retried(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    retried = taskkit.get_task("flight:shared").using(retry=2)
    monkeypatch.setitem(taskkit.registry.current().tasks, "flight:shared", retried)
    payload = {"key": key}
    failure = {"attempt": 1, "error": "Odd: no", "exception": "nowhere.at.all.Odd"}
    leading(payload, RunStatus.FAILED, error="Odd: no", history=[failure])
    run_id = str(uuid.uuid4())
    with pytest.raises(RunFailed, match="Odd: no"):  # a final failure, as Celery sees it too
        deliver(payload, run_id)
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.attempt, row.error) == (RunStatus.FAILED, 1, "Odd: no")


def test_a_leader_writes_its_end_at_once_then_lets_go(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even in a worker, whose recorder batches the ends of runs: followers read the row."""
    monkeypatch.setattr(recorder, "enabled", True)
    payload = {"key": key, "first": 0}
    leader = deliver(payload)
    row = TaskRun.objects.get(pk=leader)
    assert (row.status, row.result) == (RunStatus.SUCCEEDED, {"ran": leader})
    task = taskkit.get_task("flight:shared")
    assert holder(flight.flight_key(task, payload)) is None


def test_other_payloads_fly_apart() -> None:
    task = taskkit.get_task("flight:shared")
    one = flight.flight_key(task, {"a": 1, "b": 2})
    assert one == flight.flight_key(task, {"b": 2, "a": 1})
    assert one != flight.flight_key(task, {"a": 1, "b": 3})


def test_the_option_and_what_it_cannot_go_with() -> None:
    def run(event: Any) -> None:
        return None

    assert taskkit.task(name="f:c", single_flight="cluster")(run).meta.shared_across_workers
    assert not taskkit.task(name="f:t")(run).meta.shared_across_workers
    with pytest.raises(taskkit.InvalidTaskDefinition, match="True, False or 'cluster'"):
        taskkit.task(name="f:x", single_flight="everywhere")(run)
    with pytest.raises(taskkit.InvalidTaskDefinition, match="cannot share one run"):
        taskkit.task(name="f:a", single_flight="cluster", scope="all")(run)
    with pytest.raises(taskkit.InvalidTaskDefinition, match="track='failures'"):
        taskkit.task(name="f:f", single_flight="cluster", track="failures")(run)


def test_a_follower_in_a_canvas_hands_the_shared_result_on(key: str) -> None:
    payload = {"key": key}
    leading(payload, RunStatus.SUCCEEDED, result={"ran": "the leader"})
    run_id = str(uuid.uuid4())
    ctask = step(run_id, chain=[{"task": "echo:payload"}], callbacks=None, chord=None)
    context = {"run_id": run_id, "attempt": 1}
    assert run_message(ctask, payload=payload, context=context) == {"ran": "the leader"}
    assert executions(key) == []


def test_a_follower_in_a_canvas_that_waits_stops_the_canvas_and_keeps_it(key: str) -> None:
    payload = {"key": key}
    leading(payload)
    run_id = str(uuid.uuid4())
    rest = [{"task": "echo:payload"}]
    ctask = step(run_id, chain=rest, callbacks=None, chord=None)
    with pytest.raises(Retry):  # Celery would otherwise go on with no result
        run_message(ctask, payload=payload, context={"run_id": run_id, "attempt": 1})
    row = TaskRun.objects.get(pk=run_id)
    assert row.status == RunStatus.SCHEDULED
    assert row.canvas == {"args": [], "options": {"chain": rest}}


def test_a_chained_step_given_a_previous_result_runs_on_its_own(key: str) -> None:
    payload = {"key": key, "first": 0}
    leading(payload)
    run_id = str(uuid.uuid4())
    context = {"run_id": run_id, "attempt": 1}
    assert run_message(step(run_id), {"n": 1}, payload=payload, context=context) == {"ran": run_id}
    assert executions(key) == [run_id]
