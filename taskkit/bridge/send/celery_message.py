"""What Celery is asked to send for one run: where it goes, its options, the one ``apply_async``.

A queue given at enqueue time wins; otherwise the project's ``task_routes``
decide, and the task's meta queue applies where no route matches. Every message
taskkit sends, and the template :mod:`.redis_batch` copies, comes out of
:func:`apply`, so both paths build the same message.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, current_app

from ...definition import Scope, Task
from .. import broadcast
from ..carrier import celery_name, is_carried
from .messages import Prepared


def routed_queue(task: Task) -> str | None:
    """The queue the project's ``task_routes`` send ``task`` to (by its taskkit name), if any."""
    router = current_app.amqp.router
    if getattr(router, "routes", ()):  # not in the stubs
        route = router.lookup_route(task.name, (), {}, {}, None)
        if route:
            queue = router.expand_destination(route).get("queue")
            return str(getattr(queue, "name", queue))
    return None


def resolve_queue(task: Task, override: str | None) -> str:
    """The queue a run goes to: the override, else the project's ``task_routes``, else meta."""
    if override is not None:
        return override
    return routed_queue(task) or task.meta.queue


def message_options(run: Prepared) -> dict[str, Any]:
    """Where the message goes, and the argument reprs Celery would otherwise compute."""
    options: dict[str, Any] = {"argsrepr": "()", "kwargsrepr": run.spelled[:1024]}
    if run.priority is not None:
        options["priority"] = run.priority
    if is_carried(run.task):
        options["shadow"] = run.task.name
    if run.task.meta.scope is Scope.ALL:
        return {**options, **broadcast.publish_options()}
    return {**options, "queue": run.queue}


def apply(app: Celery, producer: Any, run: Prepared, options: dict[str, Any], **extra: Any) -> None:
    """Hand ``run`` to Celery's ``apply_async`` on ``producer``, as JSON under its run id.

    A stored step of a canvas goes with its previous result and what follows it.
    """
    canvas = run.canvas or {}
    app.tasks[celery_name(run.task)].apply_async(
        args=tuple(canvas.get("args", ())),
        kwargs=run.kwargs(),
        **dict(canvas.get("options", {})),
        producer=producer,
        task_id=run.run_id,
        serializer="json",
        **options,
        **extra,
    )
