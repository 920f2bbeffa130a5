"""``single_flight="cluster"`` on real workers: equal queued runs, on two workers, execute once.

Each broker is a private one (a ``redis-server`` of the test's, a RabbitMQ vhost
of its own); a Beat sends the followers that waited too long again. The task,
``flight:shared``, pushes its run id to a Redis list per test for every execution.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from django.db import connection

import taskkit
from taskkit.exceptions import RunFailed
from taskkit.models import RunStatus, TaskRun, WorkerHeartbeat
from tests.apps.nested.tasks.echo.count import COUNTS_URL
from tests.integration.conftest import Broker, start_worker, stop

from .conftest import on_broker, recorded, start_beat
from .processes import alive_until, kill_group

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
TIMEOUT = 60
QUEUES = ("flight-one", "flight-two")


def on_both(count: int, payload: dict[str, Any]) -> list[taskkit.RunHandle]:
    """``count`` equal runs sent at once, to the two workers' queues in turn."""
    return concurrently(
        count, lambda i: taskkit.enqueue("flight:shared", payload, queue=QUEUES[i % 2])
    )


@pytest.fixture
def broker(private_url: str) -> Iterator[Broker]:
    """A private broker, its app made current, and a Beat on it."""
    beat = start_beat(private_url)
    try:
        with on_broker("reliability-flight", private_url) as broker:
            yield broker
    finally:
        stop(beat)


def started(
    broker: Broker, label: str, queues: tuple[str, ...], pool: str = "threads"
) -> subprocess.Popen[str]:
    """A worker on ``queues`` (threads, 4 at once; prefork, 1), once its heartbeat is written."""
    process = start_worker(broker, label, queues, pool)
    beats = WorkerHeartbeat.objects.filter(name__startswith=f"{label}-{broker.name}-")
    alive_until([process], beats.exists, TIMEOUT, lambda: f"worker {label} did not start")
    return process


@pytest.fixture
def two_workers(broker: Broker) -> Iterator[list[subprocess.Popen[str]]]:
    """Two workers, one per queue of :data:`QUEUES`: runs sent to both meet on both."""
    workers = [started(broker, f"fly{i}", (queue,)) for i, queue in enumerate(QUEUES)]
    try:
        yield workers
    finally:
        for worker in workers:
            stop(worker)


def concurrently(count: int, call: Any) -> list[Any]:
    def one(index: int) -> Any:
        try:
            return call(index)
        finally:
            connection.close()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def executions(key: str) -> list[str]:
    counts = redis.Redis.from_url(COUNTS_URL, decode_responses=True)
    try:
        return [str(line) for line in counts.lrange(key, 0, -1)]
    finally:
        counts.close()


@pytest.mark.usefixtures("two_workers")
def test_equal_runs_on_two_workers_execute_once() -> None:
    key = f"flight:{uuid.uuid4()}"
    same, other = {"key": key, "first": 2}, {"key": key, "first": 2, "other": True}
    handles = on_both(3, same)
    different = taskkit.enqueue("flight:shared", other, queue=QUEUES[1])

    results = [handle.result(timeout=TIMEOUT) for handle in handles]
    assert different.result(timeout=TIMEOUT) == {"ran": different.id}
    (ran,) = {result["ran"] for result in results}  # one result for every handle
    assert ran in {handle.id for handle in handles}
    assert sorted(executions(key)) == sorted([ran, different.id])  # once per payload
    runs = TaskRun.objects.filter(pk__in=[handle.id for handle in handles])
    assert {run.status for run in runs} == {RunStatus.SUCCEEDED}
    assert len({run.worker for run in runs}) == 2  # on both workers


@pytest.mark.usefixtures("two_workers")
def test_a_failure_is_shared_with_its_error() -> None:
    key = f"flight:{uuid.uuid4()}"
    handles = on_both(3, {"key": key, "fail": 1})
    errors = set()
    for handle in handles:
        with pytest.raises(RunFailed) as failed:
            handle.result(timeout=TIMEOUT)
        errors.add(failed.value.error)
    (ran,) = executions(key)
    assert errors == {f"ValueError: failed in {ran}"}


def test_a_follower_takes_over_from_a_killed_leader(broker: Broker) -> None:
    doomed = started(broker, "doomed", ("flight-doomed",))
    survivor = started(broker, "survivor", ("default",))
    try:
        key = f"flight:{uuid.uuid4()}"
        payload = {"key": key, "first": TIMEOUT, "then": 0.5}
        leader = taskkit.enqueue("flight:shared", payload, queue="flight-doomed")
        assert recorded(key, 1, TIMEOUT) == [leader.id]  # the leader runs, for a long while
        followers = concurrently(2, lambda _: taskkit.enqueue("flight:shared", payload))
        time.sleep(1)  # the followers wait for the leader
        assert executions(key) == [leader.id]

        kill_group(doomed)

        results = [handle.result(timeout=TIMEOUT) for handle in followers]
        (ran,) = {result["ran"] for result in results}
        assert ran in {handle.id for handle in followers}
        assert executions(key) == [leader.id, ran]  # the leader's, then one follower's
        assert leader.status == RunStatus.RUNNING  # until the sweep finds its worker lost
    finally:
        stop(doomed)
        stop(survivor)


def test_followers_filling_a_pool_give_their_slot_back(broker: Broker) -> None:
    """A one-process prefork pool whose slot a follower takes: the follower hands it back
    after ``FOLLOW_FOR`` (re-delayed), so another run goes on while the leader still runs."""
    leader_worker = started(broker, "leader", ("flight-leader",))
    pool = started(broker, "pool", ("flight-pool",), "prefork")
    try:
        key = f"flight:{uuid.uuid4()}"
        payload = {"key": key, "first": 30}
        leader = taskkit.enqueue("flight:shared", payload, queue="flight-leader")
        recorded(key, 1, TIMEOUT)
        followers = [taskkit.enqueue("flight:shared", payload, queue="flight-pool") for _ in "ab"]
        other = taskkit.enqueue("echo:payload", {"meanwhile": True}, queue="flight-pool")

        assert other.result(timeout=TIMEOUT) == {"meanwhile": True}
        assert leader.status == RunStatus.RUNNING  # the followers did not keep the slot

        results = [handle.result(timeout=TIMEOUT) for handle in [leader, *followers]]
        assert results == [{"ran": leader.id}] * 3
        assert executions(key) == [leader.id]
    finally:
        stop(pool)
        stop(leader_worker)
