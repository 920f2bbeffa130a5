"""The enqueue family: validate, then publish through Celery's own path.

Publishing goes through the Celery task's ``apply_async``, so routers, queue
declaration and signals stay in force. Inside ``transaction.atomic()`` the
message is sent after commit; a rolled-back transaction sends nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError

from ..conf import settings
from ..definition import Source, Task, normalize_payload
from ..exceptions import BrokerUnavailable, TaskNotImplemented
from .handle import RunHandle


def _routed_by_project(name: str) -> bool:
    """Whether the project's ``task_routes`` decide this task's queue."""
    router = current_app.amqp.router
    routes = getattr(router, "routes", ())  # the stubs do not declare it
    return bool(routes) and bool(router.lookup_route(name, (), {}, {}, None))


def message(
    task: Task, payload: Mapping[str, Any] | None, queue: str, run_id: str
) -> dict[str, Any]:
    """The keyword arguments of the Celery message for one run (plain JSON)."""
    plain, _ = normalize_payload(
        payload, schema=task.meta.schema, max_bytes=settings.MAX_PAYLOAD_BYTES
    )
    return {
        "payload": plain,
        "context": {"run_id": run_id, "queue": queue, "source": Source.WORKER},
    }


def publish(name: str, kwargs: dict[str, Any], run_id: str, queue: str | None) -> None:
    """Send one message now; :class:`~taskkit.BrokerUnavailable` if the broker cannot be reached."""
    options: dict[str, Any] = {"task_id": run_id, "serializer": "json"}
    if queue is not None:
        options["queue"] = queue
    try:
        current_app.tasks[name].apply_async(kwargs=kwargs, **options)
    except OperationalError as exc:
        raise BrokerUnavailable(
            f"Could not send {name!r}: the broker is unreachable ({exc})."
        ) from exc


def enqueue(
    task: Task, payload: Mapping[str, Any] | None = None, *, queue: str | None = None
) -> RunHandle:
    """Queue one run of ``task`` on ``queue`` (default: the task's) and return its handle."""
    if task.handler is None:
        raise TaskNotImplemented(task.name, task.missing_reason or "no handler")
    run_id = str(uuid.uuid4())
    routed = queue is None and _routed_by_project(task.name)
    target = queue or task.meta.queue
    kwargs = message(task, payload, target, run_id)
    transaction.on_commit(lambda: publish(task.name, kwargs, run_id, None if routed else target))
    return RunHandle(id=run_id, name=task.name, queue=target)
