"""Inspecting and deleting queued work, and the run table's operations: ``taskkit.queues``.

Re-exports only. Queued messages, as the broker holds them, are in
:mod:`.queued` (one view per broker in :mod:`.brokers`); delayed, failed and
finished runs, kept in taskkit's table, in :mod:`.runs`; the workers seen and
alive in :mod:`.workers`; whether taskkit's dependencies answer in
:mod:`.health`. The ``taskqueue`` command, the admin and the HTTP API call
these functions.
"""

from __future__ import annotations

from ..exceptions import QueueNotListable, UnknownQueue
from .health import Health, HealthCheck, health
from .messages import QueuedMessage
from .queued import (
    Details,
    QueueInfo,
    delete,
    delete_run,
    details,
    find,
    info,
    list_messages,
    listable,
    purge,
)
from .runs import (
    cancel_running,
    delete_delayed,
    failed,
    find_running,
    prune,
    remove_failed,
    retry_failed,
    run_delayed_now,
)
from .workers import (
    LiveWorker,
    WorkerInfo,
    live_workers,
    reserved_by_queue,
    worker_list,
    workers,
)

#: ``taskkit.queues.list(queue)``: the public name of :func:`.queued.list_messages`.
list = list_messages

__all__ = [
    "Details",
    "Health",
    "HealthCheck",
    "LiveWorker",
    "QueueInfo",
    "QueueNotListable",
    "QueuedMessage",
    "UnknownQueue",
    "WorkerInfo",
    "cancel_running",
    "delete",
    "delete_delayed",
    "delete_run",
    "details",
    "failed",
    "find",
    "find_running",
    "health",
    "info",
    "list",
    "listable",
    "live_workers",
    "prune",
    "purge",
    "remove_failed",
    "reserved_by_queue",
    "retry_failed",
    "run_delayed_now",
    "worker_list",
    "workers",
]
