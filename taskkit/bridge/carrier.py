"""Tasks whose messages travel under one shared Celery task: ``django.tasks`` functions.

A worker knows its Celery tasks when it starts, so a task that is named only
when it is first enqueued (a ``django.tasks`` function, by its module path)
cannot have a Celery task of its own. Its messages go out as :data:`CARRIER`,
with the task's name in the message's context, where the worker reads it, and
as Celery's ``shadow`` name, which Flower and the worker's log show.

The same way carries a stored run of a task this process does not know (a
scheduler started before a deploy added the task): the worker, whose code
may be newer, decides (:func:`unknown_here`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..definition import Task, make_task

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


def _not_here(event: Any) -> None:
    raise RuntimeError("a stand-in for a task this process does not know; it never runs here")


def unknown_here(name: str, queue: str) -> Task:
    """A stand-in for task ``name``, unknown to this process, so its stored run can be sent.

    A scheduler that started before a deploy added a task must not fail the
    task's delayed runs: they go out as :data:`CARRIER` with the name in the
    context, and a worker that knows the task runs it (one that does not
    records the run as failed). The message has the carrier's Celery options
    (no time limit, acknowledged on start), not the task's own.
    """
    carry(name)
    return make_task(_not_here, __name__, name=name, queue=queue, description="unknown here")
