"""Sending messages through Celery's own publish path.

``apply_async`` keeps routers, queue declaration and signals in force (see
:mod:`.celery_message`); a batch on Redis takes :mod:`.redis_batch`'s fast path.

On RabbitMQ (py-amqp) a ``basic.publish`` returns before the broker has the
message: a connection lost right after it loses the message, and the enqueue
that "succeeded" never runs. taskkit turns publisher confirms on
(``confirm_publish``) for the apps it publishes through, unless the project set
the option itself: each publish then waits for the broker's ack, and one cut
off before its ack is sent again (at least once).

While a memory or disk alarm is on, RabbitMQ stops reading from publishing
connections: the ack never came, and the enqueue (a web request) waited for
good. A publish waits :data:`CONFIRM_TIMEOUT` for its ack, then raises
:class:`~taskkit.BrokerUnavailable`, and is not sent again: the message may
be in the broker already, and is queued once the alarm clears.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from weakref import WeakSet

from celery import Celery, current_app

from ... import events, upstream
from ...definition import Source
from ...exceptions import BrokerUnavailable, TaskNotFound
from ...models import TaskRun
from ...registry import get_task
from ..carrier import unknown_here
from . import redis_batch
from .celery_message import apply, message_options
from .messages import Prepared, prepare
from .unreachable import unreachable

logger = logging.getLogger("taskkit")

#: The apps whose publishes ``confirm_publishes`` has seen to.
_confirming: WeakSet[Celery] = WeakSet()
#: Seconds a publish waits for RabbitMQ's ack before it raises.
CONFIRM_TIMEOUT = 10.0


def _not_again(exc: BaseException, interval: float) -> None:
    """kombu's publish retry hook: a publish whose ack did not come in time is not sent
    again (it may be in the broker), and fails; other errors are retried as Celery says."""
    if isinstance(exc, TimeoutError):
        raise BrokerUnavailable(
            f"the broker did not acknowledge the message within {CONFIRM_TIMEOUT:g} s "
            "(RabbitMQ blocks publishers while a memory or disk alarm is on); it is not "
            "sent again, and may still be queued once the broker takes it"
        ) from exc


def confirming(app: Celery) -> dict[str, Any]:
    """The ``apply_async`` options of a publish that waits for the broker's ack: at most
    :data:`CONFIRM_TIMEOUT`, and not sent again after it (``{}`` without confirms)."""
    if not dict(app.conf.broker_transport_options or {}).get("confirm_publish"):
        return {}
    policy = {**dict(app.conf.task_publish_retry_policy or {}), "errback": _not_again}
    return {"confirm_timeout": CONFIRM_TIMEOUT, "retry_policy": policy}


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
            upstream.drop_connection_pools(app)
            logger.debug("publisher confirms on for %s", app.main)
    _confirming.add(app)


def publish(runs: Sequence[Prepared]) -> None:
    """Send ``runs`` over one producer; :class:`~taskkit.BrokerUnavailable` if unreachable."""
    if not runs:
        return
    try:
        app = upstream.current_object(current_app)
        confirm_publishes(app)
        with app.producer_or_acquire() as producer:
            options = [message_options(run) for run in runs]
            if redis_batch.usable(app, producer, runs) and redis_batch.publish(
                app, producer, runs, options
            ):
                return
            waits = confirming(app)
            for run, run_options in zip(runs, options, strict=True):
                apply(app, producer, run, run_options, **waits)
    except Exception as exc:
        name = runs[0].task.name
        late = exc if isinstance(exc, BrokerUnavailable) else exc.__cause__  # kombu wraps it
        if isinstance(late, BrokerUnavailable):  # not acknowledged in time (_not_again)
            raise BrokerUnavailable(f"Could not send {name!r}: {late}.") from exc
        if not unreachable(exc):
            raise
        raise BrokerUnavailable(
            f"Could not send {name!r}: the broker is unreachable ({exc})."
        ) from exc


def stored_run(row: TaskRun) -> Prepared:
    """A stored run (a due delayed run, a retry, an outbox row), ready to publish again.

    A run of a task this process does not know is sent anyway (see
    :func:`~taskkit.bridge.carrier.unknown_here`): the worker decides.
    """
    try:
        task = get_task(row.name)
    except TaskNotFound:
        task = unknown_here(row.name, row.queue)
    return prepare(
        task,
        row.payload,
        row.queue,
        run_id=str(row.pk),
        attempt=row.attempt,
        scheduled_time=row.scheduled_for,
        source=Source(row.source) if row.source in {s.value for s in Source} else Source.WORKER,
        stored=True,
        priority=row.priority,
        canvas=row.canvas or None,
    )


def publish_run(row: TaskRun) -> None:
    """Send a stored run (claimed by the caller), as enqueued again."""
    run = stored_run(row)
    publish([run])
    announce(events.Step.ENQUEUED, [run])


def announce(step: events.Step, runs: Sequence[Prepared]) -> None:
    """Emit ``step`` for each of ``runs``, sent just now; one check if nobody is told."""
    if events.wanted(step):
        for run in runs:
            events.emit(step, run.run_id, run.task.name, run.queue, run.attempt)
