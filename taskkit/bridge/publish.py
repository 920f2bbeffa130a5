"""Sending messages through Celery's own publish path.

``apply_async`` keeps routers, queue declaration and signals in force. A queue
given at enqueue time wins; otherwise the project's ``task_routes`` decide, and
the task's meta queue applies where no route matches.

On RabbitMQ (py-amqp) a ``basic.publish`` returns before the broker has the
message: a connection lost right after it loses the message, and the enqueue
that "succeeded" never runs. taskkit turns publisher confirms on
(``confirm_publish``) for the apps it publishes through, unless the project set
the option itself: each publish then waits for the broker's ack, and one cut
off before its ack is sent again (at least once).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast
from weakref import WeakSet

from celery import Celery, current_app

from ..definition import Scope, Source, Task
from ..exceptions import BrokerUnavailable
from ..models import TaskRun
from ..registry import get_task
from . import broadcast, redis_batch
from .carrier import celery_name, is_carried
from .messages import Prepared, prepare
from .unreachable import unreachable

logger = logging.getLogger("taskkit")

#: The apps whose publishes ``confirm_publishes`` has seen to.
_confirming: WeakSet[Celery] = WeakSet()


def confirm_publishes(app: Celery) -> None:
    """Turn py-amqp publisher confirms on for ``app``, unless its settings say otherwise.

    The broker connection pools are keyed by the transport options: pools made
    before (their connections do not confirm) are left to the producers that hold
    them, and the app's next publish takes a pool of confirming connections.
    """
    if app in _confirming:
        return
    options = dict(app.conf.broker_transport_options or {})
    if "confirm_publish" not in options:
        with app.connection_for_write() as probe:
            pyamqp = probe.transport.driver_name == "py-amqp"
        if pyamqp:
            app.conf.broker_transport_options = {**options, "confirm_publish": True}
            app._pool = None  # type: ignore[attr-defined]  # not in the stubs
            app.amqp._producer_pool = None  # type: ignore[attr-defined]
            logger.debug("publisher confirms on for %s", app.main)
    _confirming.add(app)


def resolve_queue(task: Task, override: str | None) -> str:
    """The queue a run goes to: the override, else the project's ``task_routes``, else meta."""
    if override is not None:
        return override
    router = current_app.amqp.router
    if getattr(router, "routes", ()):  # not in the stubs
        route = router.lookup_route(task.name, (), {}, {}, None)
        if route:
            queue = router.expand_destination(route).get("queue")
            return str(getattr(queue, "name", queue))
    return task.meta.queue


def _options(run: Prepared) -> dict[str, Any]:
    """Where the message goes, and the argument reprs Celery would otherwise compute."""
    options: dict[str, Any] = {"argsrepr": "()", "kwargsrepr": run.canonical[:1024]}
    if run.priority is not None:
        options["priority"] = run.priority
    if is_carried(run.task):
        options["shadow"] = run.task.name
    if run.task.meta.scope is Scope.ALL:
        return {**options, **broadcast.publish_options()}
    return {**options, "queue": run.queue}


def publish(runs: Sequence[Prepared]) -> None:
    """Send ``runs`` over one producer; :class:`~taskkit.BrokerUnavailable` if unreachable."""
    if not runs:
        return
    try:
        confirm_publishes(cast(Any, current_app)._get_current_object())
        with current_app.producer_or_acquire() as producer:
            if redis_batch.usable(current_app, producer, runs) and redis_batch.publish(
                current_app, producer, runs, _options
            ):
                return
            for run in runs:
                current_app.tasks[celery_name(run.task)].apply_async(
                    kwargs=run.kwargs(),
                    producer=producer,
                    task_id=run.run_id,
                    serializer="json",
                    **_options(run),
                )
    except Exception as exc:
        if not unreachable(exc):
            raise
        name = runs[0].task.name
        raise BrokerUnavailable(
            f"Could not send {name!r}: the broker is unreachable ({exc})."
        ) from exc


def stored_run(row: TaskRun) -> Prepared:
    """A stored run (a due delayed run, a retry, an outbox row), ready to publish again."""
    return prepare(
        get_task(row.name),
        row.payload,
        row.queue,
        run_id=str(row.pk),
        attempt=row.attempt,
        scheduled_time=row.scheduled_for,
        source=Source(row.source) if row.source in {s.value for s in Source} else Source.WORKER,
        stored=True,
        priority=row.priority,
    )


def publish_run(row: TaskRun) -> None:
    """Send a stored run (claimed by the caller)."""
    publish([stored_run(row)])
