"""A taskkit run as a Celery signature, for ``chain``, ``group`` and ``chord``.

The signature carries the message :func:`~taskkit.bridge.send.enqueue.enqueue_task`
would send: the payload checked now, a context with a run id of its own (the
Celery task id, so each step is a run taskkit records), and the queue, routes and
priority resolved the same way. Celery sends it when the canvas is applied; a
step of a chain gets the previous step's result as its first positional
argument, which the worker hands to the task as ``event.previous``. Publisher
confirms are turned on for the app as :func:`~.publish.publish` does (no connection
is opened for that), so RabbitMQ acknowledges the steps this process sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import Signature, current_app

from ... import upstream
from ...definition import Scope, Task
from ...exceptions import NotChainable
from ..carrier import celery_name
from .celery_message import message_options, resolve_queue
from .messages import prepare
from .publish import confirm_publishes


def task_signature(
    task: Task,
    payload: Mapping[str, Any] | None = None,
    queue: str | None = None,
    *,
    immutable: bool = False,
    priority: int | None = None,
) -> Signature[Any]:
    """One run of ``task`` as a Celery signature; the payload is checked here, not when sent.

    ``immutable``: the step does not receive the previous step's result.
    """
    if task.meta.scope is Scope.ALL:
        raise NotChainable(
            f"{task.name!r} runs on every worker (scope='all'): each would go on with the "
            "canvas, so it cannot be a step of one; enqueue it instead."
        )
    run = prepare(task, payload, resolve_queue(task, queue), priority=priority)
    confirm_publishes(upstream.current_object(current_app))  # Celery publishes the steps
    return current_app.signature(
        celery_name(task),
        kwargs=run.kwargs(),
        immutable=immutable,
        task_id=run.run_id,
        serializer="json",
        **message_options(run),
    )
