"""The queues taskkit knows of: what a ``*`` worker consumes.

AMQP cannot list queues, so taskkit keeps its own account: Celery's default
queue, configured ``task_queues``, the queues of ``task_routes`` (a dict), every
queue a task's meta names, the ``QUEUES`` of the ``django.tasks`` backends on
Celery, and every queue an enqueue named (``queue=…``, kept in
:class:`~taskkit.models.KnownQueue`; no scan of the run table, which may be huge).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from celery import current_app
from django.db import transaction

from ...definition.names import validate_queue_name
from ...models import KnownQueue
from ...registry import all_tasks

#: More places that name queues, added by the layers above (the ``django.tasks`` backends'
#: ``QUEUES``), as the registry takes resolvers: the bridge imports none of them.
_sources: list[Callable[[], Iterable[str]]] = []


def add_source(source: Callable[[], Iterable[str]]) -> None:
    """Count the queues ``source()`` names as known (once per source)."""
    if source not in _sources:
        _sources.append(source)


def known_queues() -> list[str]:
    """Every queue name taskkit knows of, sorted; names against the queue rule are left out
    (the broadcast exchange, a name stored before the rule), so a ``*`` worker starts."""
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
    for source in _sources:
        names.update(str(name) for name in source())
    names.update(KnownQueue.objects.values_list("name", flat=True))
    return sorted(name for name in names if valid(name))


def valid(name: object) -> bool:
    """Whether ``name`` follows the queue rule: one stored by an older version may not."""
    try:
        validate_queue_name(name)
    except ValueError:
        return False
    return True


_remembered: set[str] = set()


def remember(queue: str) -> None:
    """Keep ``queue`` among the known queues (one write per queue and process)."""
    if queue not in _remembered:
        KnownQueue.objects.get_or_create(name=queue)
        transaction.on_commit(lambda: _remembered.add(queue))  # a rollback forgets it
