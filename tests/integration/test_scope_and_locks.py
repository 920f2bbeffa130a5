"""scope="all" on two workers, and the locks under 20 concurrent enqueues."""

from __future__ import annotations

import itertools
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection

import taskkit
from taskkit.models import RunStatus, TaskLock, TaskRun

from .conftest import Broker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]
TIMEOUT = 60


def concurrently(count: int, call: Any) -> list[Any]:
    def one(_: int) -> Any:
        try:
            return call()
        finally:
            connection.close()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def no_overlap(results: list[dict[str, float]]) -> bool:
    spans = sorted((r["start"], r["end"]) for r in results)
    return all(after[0] >= before[1] for before, after in itertools.pairwise(spans))


def test_scope_all_runs_once_per_worker(
    broker: Broker, second_worker: subprocess.Popen[str]
) -> None:
    # the second worker is up once it has run something from its own queue share
    wait_for(
        lambda: (
            taskkit.enqueue("echo:payload").result(timeout=TIMEOUT) is not None
            and TaskRun.objects.filter(worker__startswith="second-").exists()
        ),
        "the second worker",
    )
    handle = taskkit.enqueue("broadcast:ping")
    wait_for(lambda: len(handle.runs()) >= 2, f"both workers to run the broadcast: {handle.runs()}")
    time.sleep(0.5)  # nothing more arrives
    runs = handle.runs()
    assert len(runs) == 2
    assert {r.worker.split("-")[0] for r in runs} == {"test", "second"}
    assert all(r.status == RunStatus.SUCCEEDED and r.result == str(r.pk) for r in runs)


def test_queue_lock_under_20_concurrent_enqueues(broker: Broker) -> None:
    parked = concurrently(20, lambda: taskkit.enqueue("locks:queued", {"k": 1}, queue="parked"))
    fresh = [h for h in parked if not h.deduplicated]
    assert len(fresh) == 1
    assert {h.id for h in parked} == {fresh[0].id}  # the no-ops say which run is queued

    handles = concurrently(20, lambda: taskkit.enqueue("locks:queued", {"k": 2}))
    ran = {h.id for h in handles if not h.deduplicated}
    assert ran and {h.id for h in handles} == ran
    for handle in handles:
        if not handle.deduplicated:
            assert handle.result(timeout=TIMEOUT) == {"k": 2}
    assert TaskRun.objects.filter(name="locks:queued", payload={"k": 2}).count() == len(ran)
    # the worker released the locks of the runs it started; the parked run still holds its own
    assert list(TaskLock.objects.values_list("owner", flat=True)) == [fresh[0].id]


def test_job_lock_under_20_concurrent_enqueues(broker: Broker) -> None:
    handles = concurrently(20, lambda: taskkit.enqueue("locks:job", {"same": True}))
    results = [h.result(timeout=TIMEOUT) for h in handles]
    assert len(results) == 20
    assert no_overlap(results)
    assert not TaskLock.objects.exists()


def test_single_instance_across_payloads(broker: Broker) -> None:
    handles = taskkit.enqueue_many("locks:single", [{"i": i} for i in range(8)])
    results = [h.result(timeout=TIMEOUT) for h in handles]
    assert no_overlap(results)
