"""The queues taskkit knows of: what a ``*`` worker consumes.

AMQP cannot list queues, so taskkit keeps its own account: Celery's default
queue, configured ``task_queues``, the queues of ``task_routes`` (a dict), every
queue a task's meta names, and every queue a stored run was sent to.
"""

from __future__ import annotations

from celery import current_app

from ..models import TaskRun
from ..registry import all_tasks
from .broadcast import NAME as BROADCAST


def known_queues() -> list[str]:
    """Every queue name taskkit knows of, sorted (the broadcast exchange is not a queue)."""
    names = {str(current_app.conf.task_default_queue or "celery")}
    names.update(queue.name for queue in current_app.conf.task_queues or ())
    routes = current_app.conf.task_routes
    if isinstance(routes, dict):
        names.update(
            str(route["queue"])
            for route in routes.values()
            if isinstance(route, dict) and route.get("queue")
        )
    names.update(task.queue for task in all_tasks().values())
    names.update(TaskRun.objects.values_list("queue", flat=True).distinct())
    names.discard(BROADCAST)
    return sorted(name for name in names if name)
