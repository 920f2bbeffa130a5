"""taskkit.run_metrics in one process, and ``taskworker --metrics-port``'s refusals.

The prefork worker's sums across its pool processes are tested with a real
worker in ``tests/reliability/test_worker_metrics.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from celery import current_app
from django.core.management import CommandError, call_command

import taskkit
from taskkit import events, run_metrics, signals
from taskkit.events import Step


@pytest.fixture
def counted() -> Iterator[run_metrics.RunMetrics]:
    """The metrics installed in this process, removed afterwards."""
    yield run_metrics.install()
    run_metrics.uninstall()


def sample(metrics: run_metrics.RunMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_each_step_is_counted_per_task_and_queue(counted: run_metrics.RunMetrics) -> None:
    events.emit(Step.STARTED, "r1", "a:task", "q1", 1, worker="w", waited=2.0)
    events.emit(Step.RETRIED, "r1", "a:task", "q1", 1, duration=0.5, error="E: x")
    events.emit(Step.STARTED, "r1", "a:task", "q1", 2, worker="w", waited=40.0)
    events.emit(Step.SUCCEEDED, "r1", "a:task", "q1", 2, duration=1.5)
    events.emit(Step.STARTED, "r2", "b:task", "q2", 1)  # a message without its time
    events.emit(Step.FAILED, "r2", "b:task", "q2", 1, duration=0.2, error="E: y")
    events.emit(Step.FAILED, "r3", "gone:task", "q2", None, error="TaskNotFound: …")
    events.emit(Step.ENQUEUED, "r4", "a:task", "q1", 1)  # not a worker's step
    assert {
        (name, task, queue): sample(counted, f"taskkit_runs_{name}_total", task=task, queue=queue)
        for name in ("started", "succeeded", "retried", "failed")
        for task, queue in (("a:task", "q1"), ("b:task", "q2"), ("gone:task", "q2"))
        if sample(counted, f"taskkit_runs_{name}_total", task=task, queue=queue)
    } == {
        ("started", "a:task", "q1"): 2,
        ("started", "b:task", "q2"): 1,
        ("succeeded", "a:task", "q1"): 1,
        ("retried", "a:task", "q1"): 1,
        ("failed", "b:task", "q2"): 1,
        ("failed", "gone:task", "q2"): 1,
    }
    duration = "taskkit_run_duration_seconds"
    assert sample(counted, f"{duration}_count", task="a:task") == 2
    assert sample(counted, f"{duration}_sum", task="a:task") == 2.0
    assert sample(counted, f"{duration}_count", task="b:task") == 1
    assert sample(counted, f"{duration}_count", task="gone:task") == 0  # no duration told
    wait = "taskkit_run_queue_wait_seconds"
    assert sample(counted, f"{wait}_count", task="a:task") == 2
    assert sample(counted, f"{wait}_bucket", task="a:task", le="5.0") == 1
    assert sample(counted, f"{wait}_bucket", task="a:task", le="60.0") == 2
    assert sample(counted, f"{wait}_count", task="b:task") == 0


def test_installing_twice_counts_once(counted: run_metrics.RunMetrics) -> None:
    assert run_metrics.install() is counted
    events.emit(Step.SUCCEEDED, "r1", "a:task", "q", 1, duration=0.1)
    assert sample(counted, "taskkit_runs_succeeded_total", task="a:task", queue="q") == 1


def test_uninstalled_nothing_listens() -> None:
    run_metrics.install()
    assert signals.run_started.has_listeners() and signals.run_failed.has_listeners()
    run_metrics.uninstall()
    assert not any(
        signal.has_listeners()
        for signal in (signals.run_started, signals.run_succeeded, signals.run_retried)
    )
    assert not signals.run_failed.has_listeners()


# taskworker --metrics-port


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv of every worker the command would have started."""
    argvs: list[list[str]] = []
    monkeypatch.setattr(current_app, "worker_main", lambda argv: argvs.append(argv))
    return argvs


def taskworker(*args: str) -> None:
    call_command("taskworker", "--queues", "default", *args, stdout=StringIO())


def test_a_worker_starts_without_prometheus_client_unless_asked_for_metrics(
    started: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # not installed
    monkeypatch.setitem(sys.modules, "taskkit.run_metrics", None)
    monkeypatch.delattr(taskkit, "run_metrics")
    monkeypatch.delenv(run_metrics.MULTIPROCESS_DIR, raising=False)
    taskworker()
    assert len(started) == 1
    with pytest.raises(
        CommandError, match=r"needs prometheus_client: pip install 'django-taskkit\["
    ):
        taskworker("--metrics-port", "9999")
    assert len(started) == 1


def test_metrics_need_the_directory_set_before_prometheus_client_is_imported(
    started: list[list[str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """This test process imported it without the variable: its counts would stay in each
    pool process, and the scrape would read none of them."""
    monkeypatch.setenv(run_metrics.MULTIPROCESS_DIR, str(tmp_path))
    (tmp_path / "counter_12.db").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("kept")
    with pytest.raises(CommandError, match="imported before the worker set PROMETHEUS_MULTIPROC"):
        taskworker("--metrics-port", "9999")
    assert started == []
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]  # the stale counts gone


@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_a_metrics_port_is_a_tcp_port(started: list[list[str]], port: str) -> None:
    with pytest.raises(CommandError, match="--metrics-port must be a TCP port"):
        taskworker("--metrics-port", port)
    assert started == []


def test_multiprocess_mode_is_told_from_the_environment_at_import(tmp_path: Path) -> None:
    """``multiprocessing()`` reads how ``prometheus_client`` chose its values' class."""
    code = "from taskkit import run_metrics; print(run_metrics.multiprocessing())"
    answers = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        for env in (
            {**os.environ, run_metrics.MULTIPROCESS_DIR: str(tmp_path)},
            {k: v for k, v in os.environ.items() if k != run_metrics.MULTIPROCESS_DIR},
        )
    ]
    assert answers == ["True", "False"]
    assert not run_metrics.multiprocessing()  # this process imported it without the variable
