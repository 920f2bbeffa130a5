"""taskkit: Django tasks discovered from ``tasks/`` modules, run inline or on Celery."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .bridge import RunHandle, get_run
from .definition import (
    Lock,
    RetryPolicy,
    Scope,
    Source,
    Task,
    TaskContext,
    TaskEvent,
    TaskMeta,
    Track,
    task,
)
from .exceptions import (
    BrokerUnavailable,
    InvalidPayload,
    InvalidTaskDefinition,
    ResultNotSerializable,
    RunCancelled,
    RunFailed,
    RunNotFound,
    RunTimeout,
    TaskkitError,
    TaskNotFound,
    TaskNotImplemented,
)
from .registry import all_tasks, get_task
from .runner import arun_task, run_task


def enqueue(
    name: str, payload: Mapping[str, Any] | None = None, *, queue: str | None = None
) -> RunHandle:
    """Queue one run of the task called ``name`` on Celery and return its handle."""
    return get_task(name).enqueue(payload, queue=queue)


__version__ = "0.1.0.dev0"

__all__ = [
    "BrokerUnavailable",
    "InvalidPayload",
    "InvalidTaskDefinition",
    "Lock",
    "ResultNotSerializable",
    "RetryPolicy",
    "RunCancelled",
    "RunFailed",
    "RunHandle",
    "RunNotFound",
    "RunTimeout",
    "Scope",
    "Source",
    "Task",
    "TaskContext",
    "TaskEvent",
    "TaskMeta",
    "TaskNotFound",
    "TaskNotImplemented",
    "TaskkitError",
    "Track",
    "__version__",
    "all_tasks",
    "arun_task",
    "enqueue",
    "get_run",
    "get_task",
    "run_task",
    "task",
]
