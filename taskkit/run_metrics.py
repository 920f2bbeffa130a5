"""Prometheus metrics of a worker's runs, counted as they happen from :mod:`taskkit.signals`.

:mod:`taskkit.queues.metrics` reads state (queue lengths, delayed runs) that
any process can read at a scrape; what happened (runs started, succeeded,
failed, retried; how long each ran and waited) only the worker that ran them
saw. :func:`install` connects receivers of the run signals that count it.

A prefork worker runs its tasks in pool processes that come and go, and a
scrape reaches one process only. So the counts use ``prometheus_client``'s
multiprocess mode: each process writes its own file under
``PROMETHEUS_MULTIPROC_DIR``, and :func:`serve`, in the worker's main process,
answers a scrape with the sum of them all, the dead pool processes' included
(a counter never falls because a pool process was replaced). Without that
variable the counts stay in the process that made them, which suits a
``solo`` or ``threads`` pool and the tests.

Needs ``prometheus_client`` (``django-taskkit[metrics]``); only ``taskworker
--metrics-port`` imports this module, and nothing in taskkit needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from celery.signals import worker_process_shutdown
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, values
from prometheus_client.exposition import start_http_server

from . import signals

#: The variable that switches ``prometheus_client`` to multiprocess mode, read when it is imported.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
#: The buckets of both histograms, in seconds: background runs take from milliseconds to an hour.
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
#: The ``dispatch_uid`` of :func:`install`'s receivers: each is connected once, however often.
UID = "taskkit.run_metrics"


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """The metrics :func:`install` made, registered on :attr:`registry`."""

    registry: CollectorRegistry
    started: Counter
    succeeded: Counter
    failed: Counter
    retried: Counter
    duration: Histogram
    queue_wait: Histogram


_installed: RunMetrics | None = None


def _make() -> RunMetrics:
    registry = CollectorRegistry(auto_describe=True)
    per_queue = ("task", "queue")

    def counter(name: str, text: str) -> Counter:
        return Counter(name, text, per_queue, registry=registry)

    return RunMetrics(
        registry=registry,
        started=counter("taskkit_runs_started_total", "Runs a worker started, per attempt."),
        succeeded=counter("taskkit_runs_succeeded_total", "Runs whose handler returned."),
        failed=counter(
            "taskkit_runs_failed_total",
            "Runs failed for good on a worker (their last attempt, or a message that cannot run).",
        ),
        retried=counter(
            "taskkit_runs_retried_total", "Failed attempts whose retry the task's policy scheduled."
        ),
        duration=Histogram(
            "taskkit_run_duration_seconds",
            "How long an attempt ran, whatever its outcome (succeeded, retried, failed).",
            ("task",),
            registry=registry,
            buckets=BUCKETS,
        ),
        queue_wait=Histogram(
            "taskkit_run_queue_wait_seconds",
            "How long a run's message waited in its queue, from its sending to its start.",
            ("task",),
            registry=registry,
            buckets=BUCKETS,
        ),
    )


def install() -> RunMetrics:
    """Count this process's runs (and, forked from it, its pool processes'); once per process.

    Call it before the pool starts: pool processes forked afterwards inherit
    the receivers. For multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR`` must be
    set before ``prometheus_client`` is first imported (see :func:`multiprocessing`).
    """
    global _installed
    if _installed is None:
        _installed = _make()
        for signal, receiver in (
            (signals.run_started, _started),
            (signals.run_succeeded, _succeeded),
            (signals.run_retried, _retried),
            (signals.run_failed, _failed),
        ):
            signal.connect(receiver, dispatch_uid=UID, weak=False)
        worker_process_shutdown.connect(_process_gone, dispatch_uid=UID, weak=False)
    return _installed


def uninstall() -> None:
    """Stop counting in this process (the tests' undo of :func:`install`)."""
    global _installed
    for signal in (
        signals.run_started,
        signals.run_succeeded,
        signals.run_retried,
        signals.run_failed,
    ):
        signal.disconnect(dispatch_uid=UID)
    worker_process_shutdown.disconnect(dispatch_uid=UID)
    _installed = None


def multiprocessing() -> bool:
    """Whether ``prometheus_client`` writes its values to ``PROMETHEUS_MULTIPROC_DIR``."""
    return values.ValueClass is not values.MutexValue


def registry() -> CollectorRegistry:
    """What a scrape reads: every process's files in multiprocess mode, else this process's."""
    if not multiprocessing():
        return install().registry
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Count the runs and answer scrapes on ``address:port`` from a thread of this process."""
    install()
    start_http_server(port, address, registry=registry())


def _started(*, task: str, queue: str, waited: float | None = None, **_: Any) -> None:
    metrics = install()
    metrics.started.labels(task, queue).inc()
    if waited is not None:  # None: a message sent without its time
        metrics.queue_wait.labels(task).observe(waited)


def _ended(counter: Counter, task: str, queue: str, duration: float | None) -> None:
    counter.labels(task, queue).inc()
    if duration is not None:  # None: a message that could not run, a run killed at its limit
        install().duration.labels(task).observe(duration)


def _succeeded(*, task: str, queue: str, duration: float | None, **_: Any) -> None:
    _ended(install().succeeded, task, queue, duration)


def _retried(*, task: str, queue: str, duration: float | None, **_: Any) -> None:
    _ended(install().retried, task, queue, duration)


def _failed(*, task: str, queue: str, duration: float | None, **_: Any) -> None:
    _ended(install().failed, task, queue, duration)


def _process_gone(pid: int | None = None, **_: Any) -> None:
    """A pool process ends: drop its live gauges' files, as ``prometheus_client`` asks.

    Its counters' and histograms' files stay: the scrape's sums include the dead processes.
    """
    if multiprocessing():
        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]
