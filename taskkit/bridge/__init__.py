"""The Celery bridge: taskkit tasks as Celery tasks, the enqueue family, run records.

Importing it needs the app registry ready (it uses the models); ``taskkit``
re-exports its public names lazily.
"""

from .enqueue import (
    aenqueue,
    aenqueue_at,
    aenqueue_in,
    aenqueue_many,
    delay_to_datetime,
    enqueue,
    enqueue_at,
    enqueue_in,
    enqueue_many,
    enqueue_many_tasks,
    enqueue_task,
    enqueue_task_at,
)
from .failures import remove_failed, retry_failed
from .handle import RunHandle, get_run
from .register import register

__all__ = [
    "RunHandle",
    "aenqueue",
    "aenqueue_at",
    "aenqueue_in",
    "aenqueue_many",
    "delay_to_datetime",
    "enqueue",
    "enqueue_at",
    "enqueue_in",
    "enqueue_many",
    "enqueue_many_tasks",
    "enqueue_task",
    "enqueue_task_at",
    "get_run",
    "register",
    "remove_failed",
    "retry_failed",
]
