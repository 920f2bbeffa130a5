"""The definition layer: what a task is. It depends on nothing else in taskkit."""

from .event import ProgressReporter, Source, TaskContext, TaskEvent
from .meta import Lock, RetryPolicy, Scope, TaskMeta, Track
from .payload import (
    canonical_json,
    normalize_payload,
    normalize_result,
    parse_payload,
    received_payload,
)
from .task import Handler, Task, make_task, task

__all__ = [
    "Handler",
    "Lock",
    "ProgressReporter",
    "RetryPolicy",
    "Scope",
    "Source",
    "Task",
    "TaskContext",
    "TaskEvent",
    "TaskMeta",
    "Track",
    "canonical_json",
    "make_task",
    "normalize_payload",
    "normalize_result",
    "parse_payload",
    "received_payload",
    "task",
]
