"""``enqueue_many`` on Redis: Celery builds one message, taskkit copies it per run.

A raw ``apply_async`` loop spends most of its time in Celery's per-message work
(routing, options, headers) and one round trip per message. Here Celery's own
``apply_async`` builds the first run's message, handed to a producer that records
it instead of sending it: routes, time limits, parent and root ids, argument
reprs, every property come from Celery itself. Each run then gets a copy with its
own id, arguments and reprs, shaped into kombu's Redis envelope by the channel's
own methods, and the envelopes go out as ``LPUSH queue m1 … m1000`` commands over
one pipeline. The target queue is declared once per batch. A worker cannot tell
these messages from ``apply_async``'s (a test compares them field by field).

Anything this copy would not reproduce falls back to ``apply_async`` per run:
brokers other than Redis, ``scope="all"``, steps of a canvas, message priorities, expiring messages
or queues, compression, task-sent events, eager mode, and connected
``before_task_publish``/``after_task_publish`` receivers (they see every message
on the fallback path).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, signals
from celery.result import AsyncResult
from kombu import serialization
from kombu.entity import maybe_delivery_mode
from kombu.exceptions import OperationalError
from kombu.utils.json import dumps

from ... import upstream
from ...definition import Scope
from ..carrier import is_carried
from .celery_message import apply
from .messages import Prepared

#: Messages per ``LPUSH`` command.
CHUNK = 1_000

_PUBLISH_SIGNALS = (signals.before_task_publish, signals.after_task_publish, signals.task_sent)


@dataclass
class _Recorder:
    """A producer for ``apply_async`` that keeps what it is asked to publish."""

    connection: Any
    calls: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)

    def publish(self, body: Any, **kwargs: Any) -> None:
        self.calls.append((body, kwargs))


def usable(app: Celery, producer: Any, runs: Sequence[Prepared]) -> bool:
    """Whether ``runs`` can take the fast path on this app and producer."""
    conf = app.conf
    return (
        len(runs) > 1
        and producer.connection.transport.driver_type == "redis"
        and len({(run.task.name, run.queue) for run in runs}) == 1
        and runs[0].task.meta.scope is Scope.ANY
        and not is_carried(runs[0].task)  # its name travels in the context: one template fails
        and not any(run.canvas for run in runs)  # steps of a canvas: arguments of their own
        and conf.task_protocol == 2
        and not conf.task_always_eager
        and not conf.task_send_sent_event
        and not any(signal.receivers for signal in _PUBLISH_SIGNALS)
    )


def _template(app: Celery, producer: Any, first: Prepared, options: dict[str, Any]) -> Any:
    """Celery's message for ``first``, as ``(body, publish kwargs)``, or None if unsupported."""
    recorder = _Recorder(producer.connection)
    # duck-typed: only publish() and connection are used
    apply(app, recorder, first, options, add_to_parent=False)
    ((body, kwargs),) = recorder.calls
    unsupported = (
        kwargs.get("exchange") != ""
        or kwargs.get("priority")
        or kwargs.get("compression")
        or kwargs.get("expiration") is not None
        or body[0]
        or body[1] != first.kwargs()
        or kwargs.get("serializer") != "json"
    )
    return None if unsupported else (body, kwargs)


def publish(
    app: Celery,
    producer: Any,
    runs: Sequence[Prepared],
    options: Sequence[dict[str, Any]],
) -> bool:
    """Push ``runs`` in chunks; False (nothing sent) when they need Celery's own path.

    ``options`` are the runs' ``apply_async`` options, in order; from one run to the
    next they differ only in the argument reprs, the only ones copied per run.
    """
    template = _template(app, producer, runs[0], options[0])
    if template is None:
        return False
    (args, _, embed), kwargs = template
    queue = kwargs["routing_key"]
    channel = producer.channel
    with _broker_errors(producer.connection):
        for entity in kwargs.get("declare") or ():
            producer.maybe_declare(entity)
    if upstream.declared_with_expiry(channel, queue):  # known once declared
        return False
    headers: dict[str, Any] = kwargs["headers"]
    fixed = {
        key: value
        for key, value in kwargs.items()
        if key not in _PUBLISH_ARGUMENTS and key not in _REPRS and key != "correlation_id"
    }
    fixed["delivery_mode"] = maybe_delivery_mode(
        kwargs.get("delivery_mode") or producer.exchange.delivery_mode
    )
    parent_root = headers["root_id"] if headers["parent_id"] else None
    envelopes = []
    for run, run_options in zip(runs, options, strict=True):
        reprs = {key: run_options[key] for key in _REPRS}
        content_type, content_encoding, body = serialization.dumps(
            (args, run.kwargs(), embed), serializer="json"
        )
        message = channel.prepare_message(
            body,
            0,
            content_type,
            content_encoding,
            {**headers, "id": run.run_id, "root_id": parent_root or run.run_id, **reprs},
            {**fixed, "correlation_id": run.run_id, **reprs},
        )
        upstream.augment_message(channel, message, queue)
        envelopes.append(dumps(message))
    with (
        _broker_errors(producer.connection),
        channel.conn_or_acquire() as client,
        client.pipeline(transaction=False) as pipe,
    ):
        for start in range(0, len(envelopes), CHUNK):
            pipe.lpush(queue, *envelopes[start : start + CHUNK])
        pipe.execute()
    _add_to_parent(app, runs)
    return True


#: The options that differ from one run to the next (in headers and properties alike).
_REPRS = ("argsrepr", "kwargsrepr")

#: ``Producer.publish`` arguments that do not become message properties.
_PUBLISH_ARGUMENTS = frozenset(
    {
        "routing_key",
        "delivery_mode",
        "mandatory",
        "immediate",
        "priority",
        "content_type",
        "content_encoding",
        "serializer",
        "headers",
        "compression",
        "exchange",
        "retry",
        "retry_policy",
        "declare",
        "expiration",
        "timeout",
        "confirm_timeout",
    }
)


@contextmanager
def _broker_errors(connection: Any) -> Iterator[None]:
    """Redis client errors as kombu's ``OperationalError``, as kombu's own publish raises them."""
    try:
        yield
    except connection.connection_errors + connection.channel_errors as exc:
        raise OperationalError(str(exc)) from exc


def _add_to_parent(app: Celery, runs: Sequence[Prepared]) -> None:
    """What ``apply_async`` does when called from a running task: the runs join its trail."""
    parent = app.current_worker_task
    if parent is not None:
        for run in runs:
            parent.add_trail(AsyncResult(run.run_id, app=app))
