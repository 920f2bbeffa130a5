"""taskkit: Django tasks discovered from ``tasks/`` modules, run inline or on Celery."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    NotChainable,
    PayloadNotJSON,
    ResultNotSerializable,
    RunCancelled,
    RunFailed,
    RunNotFound,
    RunTimeout,
    TaskExited,
    TaskkitError,
    TaskNotFound,
    TaskNotImplemented,
    TaskNotPeriodic,
)
from .registry import all_tasks, get_task
from .runner import arun_task, run_task

# The bridge uses the models, which cannot load before the app registry: its names are
# imported on first use (PEP 562), and for type checkers right here.
if TYPE_CHECKING:
    from .bridge import (
        RunHandle,
        aenqueue,
        aenqueue_at,
        aenqueue_in,
        aenqueue_many,
        enqueue,
        enqueue_at,
        enqueue_in,
        enqueue_many,
        get_run,
    )
    from .queues.runs import remove_failed, retry_failed
    from .scheduling.periodic import sync_periodic
    from .scheduling.recurrent import enqueue_recurrent, stop_recurrent

_BRIDGE = (
    "RunHandle",
    "aenqueue",
    "aenqueue_at",
    "aenqueue_in",
    "aenqueue_many",
    "enqueue",
    "enqueue_at",
    "enqueue_in",
    "enqueue_many",
    "get_run",
)
#: Lazy name -> the module it lives in.
_LAZY = {
    **dict.fromkeys(_BRIDGE, "bridge"),
    "remove_failed": "queues.runs",
    "retry_failed": "queues.runs",
    "sync_periodic": "scheduling.periodic",
    "enqueue_recurrent": "scheduling.recurrent",
    "stop_recurrent": "scheduling.recurrent",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'taskkit' has no attribute {name!r}")


__version__ = "0.1.0.dev0"

__all__ = [
    "BrokerUnavailable",
    "InvalidPayload",
    "InvalidTaskDefinition",
    "Lock",
    "NotChainable",
    "PayloadNotJSON",
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
    "TaskExited",
    "TaskMeta",
    "TaskNotFound",
    "TaskNotImplemented",
    "TaskNotPeriodic",
    "TaskkitError",
    "Track",
    "__version__",
    "aenqueue",
    "aenqueue_at",
    "aenqueue_in",
    "aenqueue_many",
    "all_tasks",
    "arun_task",
    "enqueue",
    "enqueue_at",
    "enqueue_in",
    "enqueue_many",
    "enqueue_recurrent",
    "get_run",
    "get_task",
    "remove_failed",
    "retry_failed",
    "run_task",
    "stop_recurrent",
    "sync_periodic",
    "task",
]
