"""Tasks whose messages travel under one shared Celery task: ``django.tasks`` functions.

A worker knows its Celery tasks when it starts, so a task that is named only
when it is first enqueued (a ``django.tasks`` function, by its module path)
cannot have a Celery task of its own. Its messages go out as :data:`CARRIER`,
with the task's name in the message's context, where the worker reads it, and
as Celery's ``shadow`` name, which Flower and the worker's log show.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..definition import Task

#: The Celery task every carried task's messages are sent as.
CARRIER = "taskkit.carried"

_carried: set[str] = set()


def carry(name: str) -> None:
    """Send the messages of the task called ``name`` as :data:`CARRIER`."""
    _carried.add(name)


def is_carried(task: Task) -> bool:
    return task.name in _carried


def celery_name(task: Task) -> str:
    """The Celery task ``task``'s messages are sent as."""
    return CARRIER if is_carried(task) else task.name


def task_name(celery_task: str, context: Mapping[str, Any]) -> str:
    """The taskkit task a message of ``celery_task`` with ``context`` is for."""
    if celery_task == CARRIER:
        return str(context.get("task") or celery_task)
    return celery_task
