"""Prometheus metrics of queued and recorded work, read afresh at every scrape.

A collector, not counters kept in memory: the state lives in the broker and in
taskkit's tables, which every process shares, so any web process answers a
scrape with the same numbers and a restart loses none. A scrape costs what
:func:`~taskkit.queues.details` costs on the broker (a length and a
one-message read per queue, however long the queue) and a few indexed reads
of the tables, each read once. Every metric is a state read now, a gauge, but
the count of leader changes, which the lease's row keeps: what happened on the
workers (runs finished, their durations) is theirs to count
(:mod:`taskkit.run_metrics`, served by ``taskworker --metrics-port``).

A part that cannot be read is left out and the rest still answers: an
unreachable broker gives ``taskkit_broker_up 0`` and no queue metrics; a
failing database, no metrics from its tables.

Needs ``prometheus_client`` (``django-taskkit[metrics]``); nothing else in taskkit imports
this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

from django.db import Error as DatabaseError
from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..conf import settings
from ..models import RunStatus, TaskRun, WorkerHeartbeat
from ..registry import all_tasks
from ..scheduling import lease
from .health import (
    OVERDUE,
    _hidden,
    consumed,
    consumers_answer,
    delayed_answer,
    delayed_found,
    health,
    memory_answer,
    scheduler_answer,
)
from .queued import broker_view, read_queues

logger = logging.getLogger("taskkit.metrics")

#: Every metric: its name, what it says, its labels.
METRICS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("taskkit_broker_up", "1 if this scrape read the broker; 0: no queue metrics.", ()),
    (
        "taskkit_broker_memory_bytes",
        "Memory the broker's server uses (Redis; RabbitMQ's node nearest its limit).",
        (),
    ),
    ("taskkit_broker_memory_limit_bytes", "The broker's memory limit (0: none).", ()),
    ("taskkit_queue_messages", "Messages waiting in the queue.", ("queue",)),
    (
        "taskkit_queue_oldest_message_age_seconds",
        "Age of the message a worker takes next, on brokers that tell (Redis, embedded).",
        ("queue",),
    ),
    (
        "taskkit_queue_consumers",
        "Live workers consuming the queue, as their heartbeats say.",
        ("queue",),
    ),
    ("taskkit_delayed_runs", "Delayed runs and retries waiting to be sent.", ()),
    (
        "taskkit_delayed_overdue_seconds",
        "How long ago the first delayed run still unsent was due (0: none is due).",
        (),
    ),
    (
        "taskkit_runs",
        "Recorded runs of the task in the state (running, failed).",
        ("task", "status"),
    ),
    ("taskkit_workers_alive", "Workers whose heartbeat is newer than WORKER_LOST_AFTER.", ()),
    (
        "taskkit_workers_lost",
        "Workers not seen for WORKER_LOST_AFTER whose runs the leader has not swept yet.",
        (),
    ),
    (
        "taskkit_scheduler_leader",
        "1 if the holder's leader lease is live; 0: expired, or held by nobody (holder empty).",
        ("holder",),
    ),
    (
        "taskkit_scheduler_lease_remaining_seconds",
        "Seconds the leader's lease runs without a renewal (0: no leader).",
        (),
    ),
    (
        "taskkit_scheduler_leader_changes_total",
        "Times the leader lease passed to another Beat (a takeover, or after a release).",
        (),
    ),
    ("taskkit_up", "1 if the health check passes, as GET <mount>/health says.", ("check",)),
)
#: The states ``taskkit_runs`` counts (see :func:`_runs`).
COUNTED: tuple[str, ...] = (RunStatus.RUNNING.value, RunStatus.FAILED.value)
#: The content type of :func:`exposition`'s text.
CONTENT_TYPE: str = CONTENT_TYPE_LATEST

Sample = tuple[str, tuple[str, ...], float]


def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
    return {
        name: (CounterMetricFamily if name.endswith("_total") else GaugeMetricFamily)(
            name, text, labels=labels
        )
        for name, text, labels in METRICS
    }


def _queues() -> Iterator[Sample]:
    """The broker's queues, as :func:`~taskkit.queues.details` reads them, connecting once;
    and who consumes them, from the heartbeats (the ``consumers`` check)."""
    try:
        with broker_view(retry=False) as broker:  # kombu's retries outlast a scrape's timeout
            queues, listable = read_queues(broker), broker.listable
            memory, name = broker.memory(), broker.name
    except DatabaseError:
        raise  # the known queues are kept in the database: not the broker's failure
    except Exception as exc:  # whatever the broker raised: the rest of the scrape still answers
        logger.warning("metrics: the broker could not be read: %s", _hidden(exc))
        yield from [("taskkit_broker_up", (), 0), ("taskkit_up", ("broker",), 0)]
        yield from [("taskkit_up", ("broker_memory",), 0), ("taskkit_up", ("consumers",), 0)]
        return
    yield from [("taskkit_broker_up", (), 1), ("taskkit_up", ("broker",), 1)]
    if memory is not None:
        yield "taskkit_broker_memory_bytes", (), memory.used
        yield "taskkit_broker_memory_limit_bytes", (), memory.limit
    yield "taskkit_up", ("broker_memory",), float(memory_answer(name, memory)[0])
    now = timezone.now()
    consumers = consumed(now)
    for queue in queues:
        yield "taskkit_queue_messages", (queue.name,), queue.length
        yield "taskkit_queue_consumers", (queue.name,), consumers.get(queue.name, 0)
        if listable and (queue.oldest or not queue.length):  # else the first item has no time
            age = (now - queue.oldest).total_seconds() if queue.oldest else 0.0
            yield "taskkit_queue_oldest_message_age_seconds", (queue.name,), max(age, 0.0)
    ok, _ = consumers_answer({queue.name: queue.length for queue in queues}, consumers)
    yield "taskkit_up", ("consumers",), float(ok)


def _health() -> Iterator[Sample]:
    """The checks no other reader answers from its own read."""
    for check in health(["database", "workers"]).checks:
        yield "taskkit_up", (check.name,), float(check.ok)


def _delayed() -> Iterator[Sample]:
    """One aggregate on the index of the due time, the ``delayed`` check's too."""
    now = timezone.now()
    found = delayed_found(now, OVERDUE)
    first = found["first"]
    overdue = (now - first).total_seconds() if first else 0.0
    yield "taskkit_delayed_runs", (), found["waiting"]
    yield "taskkit_delayed_overdue_seconds", (), max(overdue, 0.0)
    yield "taskkit_up", ("delayed",), float(delayed_answer(found, now, OVERDUE)[0])


def _runs() -> Iterator[Sample]:
    """Running and failed runs per task: one GROUP BY over the rows in those states only.

    Succeeded and cancelled rows are most of the table and grow with every run
    until pruned; counting them would read them all at every scrape. Running
    rows are few; failed rows stay until retried, removed or pruned, so their
    count is a gauge, which falls too. Every registered task has both series,
    0 without such runs, so a task's first failure is a rise that ``delta()``
    sees, not a new series.
    """
    counts = {(name, status): 0 for name in all_tasks() for status in COUNTED}
    rows = (
        TaskRun.objects.filter(status__in=COUNTED)
        .order_by()
        .values_list("name", "status")
        .annotate(runs=Count("pk"))
    )
    for name, status, runs in rows:
        counts[name, status] = runs
    for (name, status), runs in sorted(counts.items()):
        yield "taskkit_runs", (name, status), runs


def _workers() -> Iterator[Sample]:
    """Heartbeats on either side of ``WORKER_LOST_AFTER``, as the health check and the sweep judge.

    Lost workers are a gauge, not a ``_total``: a worker counts until the
    sweep settles its runs, and the sweep keeps a lost worker's row a day only.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.WORKER_LOST_AFTER)
    found = WorkerHeartbeat.objects.unswept().aggregate(
        alive=Count("pk", filter=Q(seen_at__gte=cutoff)),
        lost=Count("pk", filter=Q(seen_at__lt=cutoff)),
    )
    yield "taskkit_workers_alive", (), found["alive"]
    yield "taskkit_workers_lost", (), found["lost"]


def _leader() -> Iterator[Sample]:
    """The Beat lease's row: its holder, its time left, its changes, and the ``scheduler`` check."""
    now = timezone.now()
    found = lease.held(lease.BEAT)
    holder, left = (found[0], (found[1] - now).total_seconds()) if found else ("", 0.0)
    yield "taskkit_scheduler_leader", (holder,), float(left > 0)
    yield "taskkit_scheduler_lease_remaining_seconds", (), max(left, 0.0)
    yield "taskkit_up", ("scheduler",), float(scheduler_answer(found, now)[0])
    yield "taskkit_scheduler_leader_changes_total", (), lease.changes(lease.BEAT)


#: What a scrape reads, in order, with the checks each answers (0 when its read fails);
#: each reads the clock when it runs, after a slow broker.
READERS: tuple[tuple[Callable[[], Iterator[Sample]], tuple[str, ...]], ...] = (
    (_queues, ("broker_memory", "consumers")),
    (_health, ("database", "workers")),
    (_delayed, ("delayed",)),
    (_runs, ()),
    (_workers, ()),
    (_leader, ("scheduler",)),
)


class TaskkitCollector(Collector):
    """taskkit's metrics, read when a :class:`~prometheus_client.CollectorRegistry` collects.

    Register it on a registry of your own, or on ``prometheus_client.REGISTRY``
    to serve the metrics with the rest of the process's.
    """

    def describe(self) -> list[Metric]:
        """The metrics without samples: registering reads nothing (the default registry
        would otherwise ``collect()``, perhaps before the database exists)."""
        return list(_families().values())

    def collect(self) -> Iterator[Metric]:
        families = _families()
        for read, checks in READERS:
            try:
                samples = list(read())
            except DatabaseError as exc:
                logger.warning(
                    "metrics: %s left out, the database failed: %s",
                    read.__name__.strip("_"),
                    _hidden(exc),
                )
                samples = [("taskkit_up", (check,), 0.0) for check in checks]
            for name, labels, value in samples:
                families[name].add_metric(labels, value)
        yield from families.values()


def exposition() -> bytes:
    """taskkit's metrics, read now, in Prometheus' text format (:data:`CONTENT_TYPE`)."""
    registry = CollectorRegistry()
    registry.register(TaskkitCollector())
    return generate_latest(registry)
