"""``taskworker --metrics-port``: a prefork worker's runs counted across its pool processes.

A real ``manage.py taskworker`` with a prefork pool of two on a private
``redis-server`` runs succeeding, failing and retried runs; its main process,
which runs none of them, answers the scrape with their sums per task, read
with ``prometheus_client``'s own parser.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import taskkit
from taskkit.models import RunStatus, TaskRun
from taskkit.scheduling import promote_due
from tests.integration.conftest import Broker, stop, worker_env

from .conftest import PrivateRedis, free_port, on_broker
from .processes import start_taskworker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
TIMEOUT = 60
QUEUE = "metered"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def broker(private_redis: PrivateRedis) -> Iterator[Broker]:
    with on_broker("reliability-metrics", private_redis.url) as broker:
        yield broker


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def finished(run_ids: list[str]) -> bool:
    ended = (RunStatus.SUCCEEDED, RunStatus.FAILED)
    return TaskRun.objects.filter(pk__in=run_ids, status__in=ended).count() == len(run_ids)


def test_a_prefork_worker_serves_its_pools_counts_per_task(broker: Broker, tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "multiproc"
    (folder).mkdir()
    (folder / "counter_1.db").write_bytes(b"stale")  # an earlier worker's: emptied at start
    env = {**worker_env(broker), "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    worker = start_taskworker(
        env, "--queues", QUEUE, "--pool", "prefork", "--concurrency", "2",
        "--metrics-port", str(port), "--metrics-address", "127.0.0.1",
    )  # fmt: skip
    try:
        runs = [taskkit.enqueue("echo:payload", {"i": i}, queue=QUEUE).id for i in range(3)]
        runs.append(taskkit.enqueue("echo:fail", {}, queue=QUEUE).id)
        flaky = taskkit.enqueue("flaky:retry", {"succeed_on": 2}, queue=QUEUE).id
        runs.append(flaky)
        deadline = time.monotonic() + TIMEOUT
        while not finished(runs):
            assert worker.poll() is None, "the worker died"
            assert time.monotonic() < deadline, list(TaskRun.objects.values_list("name", "status"))
            promote_due()  # the retry, as the leader Beat would send it
            time.sleep(0.1)
        samples = scrape(port)
        pids = {path.name for path in folder.glob("counter_*.db")}
    finally:
        stop(worker)

    def per_task(name: str, label: str = "task", **extra: str) -> dict[str, float]:
        tasks = ("echo:payload", "echo:fail", "flaky:retry")
        return {task: value(samples, name, **{label: task}, **extra) for task in tasks}

    on_queue = {"queue": QUEUE}
    assert per_task("taskkit_runs_started_total", **on_queue) == {
        "echo:payload": 3,
        "echo:fail": 1,
        "flaky:retry": 2,
    }
    assert per_task("taskkit_runs_succeeded_total", **on_queue) == {
        "echo:payload": 3,
        "echo:fail": 0,
        "flaky:retry": 1,
    }
    assert per_task("taskkit_runs_failed_total", **on_queue) == {
        "echo:payload": 0,
        "echo:fail": 1,
        "flaky:retry": 0,
    }
    assert per_task("taskkit_runs_retried_total", **on_queue) == {
        "echo:payload": 0,
        "echo:fail": 0,
        "flaky:retry": 1,
    }
    # every attempt's duration and wait, whatever its outcome
    attempts = {"echo:payload": 3, "echo:fail": 1, "flaky:retry": 2}
    assert per_task("taskkit_run_duration_seconds_count") == attempts
    assert per_task("taskkit_run_queue_wait_seconds_count") == attempts
    assert per_task("taskkit_run_queue_wait_seconds_bucket", le="+Inf") == attempts
    assert value(samples, "taskkit_run_duration_seconds_sum", task="echo:payload") >= 0
    # counted in the pool processes' files, none left of the earlier worker's
    assert "counter_1.db" not in pids
    assert pids and str(worker.pid) not in {name.split("_")[1][:-3] for name in pids}
