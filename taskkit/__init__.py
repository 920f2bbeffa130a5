"""taskkit: Django tasks discovered from ``tasks/`` modules, run inline or on Celery."""

from __future__ import annotations

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
    InvalidPayload,
    InvalidTaskDefinition,
    ResultNotSerializable,
    TaskkitError,
    TaskNotFound,
    TaskNotImplemented,
)
from .registry import all_tasks, get_task
from .runner import arun_task, run_task

__version__ = "0.1.0.dev0"

__all__ = [
    "InvalidPayload",
    "InvalidTaskDefinition",
    "Lock",
    "ResultNotSerializable",
    "RetryPolicy",
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
    "get_task",
    "run_task",
    "task",
]
