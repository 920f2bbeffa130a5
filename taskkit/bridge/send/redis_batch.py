"""Runs onto Redis without Celery's work per message: a message shape per task and queue.

A raw ``apply_async`` spends most of its time in Celery's per-message work
(routing, options, headers) before its one ``LPUSH``. Here Celery's own
``apply_async`` builds one run's message, handed to a producer that records it
instead of sending it: routes, time limits, parent and root ids, every property
come from Celery itself. That message, shaped into kombu's Redis envelope by the
channel's own methods, becomes a :class:`Shape`: JSON text with holes for what
differs from one run to the next (its id, its body, its argument reprs, kombu's
delivery tag). A run's message is the shape with its holes filled. The target
queue is declared when the shape is built. One run goes out as one ``LPUSH``, a
batch as ``LPUSH queue m1 … m1000`` commands over one pipeline. A worker cannot
tell these messages from ``apply_async``'s (a test compares them byte for byte).

A shape is kept per process, app, task and queue, so a single enqueue pays
Celery's work once; the app's settings are read when it is built (Celery apps are
configured once, at start). Inside a running task the message carries that
task's ids: a batch builds its own shape then, and a single run takes
``apply_async``.

Anything this copy would not reproduce falls back to ``apply_async`` per run:
brokers other than Redis, ``scope="all"``, steps of a canvas, message priorities, expiring messages
or queues, compression, task-sent events, eager mode, and connected
``before_task_publish``/``after_task_publish`` receivers (they see every message
on the fallback path).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from json import dumps as json_dumps
from json.encoder import encode_basestring_ascii as quoted
from typing import Any
from weakref import WeakKeyDictionary

from celery import Celery, signals
from celery.result import AsyncResult
from django.core.signals import setting_changed
from kombu import serialization
from kombu.entity import maybe_delivery_mode
from kombu.exceptions import OperationalError
from kombu.utils.json import dumps

from ... import upstream
from ...definition import Scope
from ..carrier import is_carried
from .celery_message import apply
from .messages import Prepared, new_ids

#: Messages per ``LPUSH`` command.
CHUNK = 1_000

#: Shapes kept per app, at most (a project that makes up queue names cannot grow it forever).
KEPT = 1_000

_PUBLISH_SIGNALS = (signals.before_task_publish, signals.after_task_publish, signals.task_sent)

#: The options that differ from one run to the next (in headers and properties alike).
_REPRS = ("argsrepr", "kwargsrepr")

#: Marks a hole in a shape's text: a JSON string no message holds.
_MARK = f"taskkit-hole-{new_ids(1)[0]}-"
_HOLE = re.compile(f'"{_MARK}([a-z]+)"')


def _hole(name: str) -> str:
    return _MARK + name


@dataclass
class _Recorder:
    """A producer for ``apply_async`` that keeps what it is asked to publish."""

    connection: Any
    calls: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)

    def publish(self, body: Any, **kwargs: Any) -> None:
        self.calls.append((body, kwargs))


@dataclass(frozen=True, slots=True)
class Shape:
    """Celery's message for one task and queue, as envelope text around the holes of a run."""

    queue: str
    #: The body's JSON text before and after its keyword arguments.
    body_head: str
    body_tail: str
    #: The envelope's text between the holes, and the holes' names in order.
    pieces: tuple[str, ...]
    holes: tuple[str, ...]

    def messages(self, runs: Sequence[Prepared], options: Sequence[dict[str, Any]]) -> list[str]:
        """The envelopes of ``runs``; ``options`` give their argument reprs, in order."""
        contexts: dict[tuple[Any, ...], tuple[str, str]] = {}  # runs of a batch share theirs
        texts = []
        for run, run_options, tag in zip(runs, options, new_ids(len(runs)), strict=True):
            run_id = quoted(run.run_id)
            key = (
                run.queue,
                run.source,
                run.attempt,
                run.enqueued_at,
                run.scheduled_time,
                run.stored,
            )
            if key not in contexts:
                head, _, tail = json_dumps({**run.context(), "run_id": _hole("id")}).partition(
                    quoted(_hole("id"))
                )
                contexts[key] = head, tail
            head, tail = contexts[key]
            body = (  # spelled as kombu spells it: a queue's sieve looks for its bytes
                f'{self.body_head}{{"payload": {run.spelled}, '
                f'"context": {head}{run_id}{tail}}}{self.body_tail}'
            )
            values = {
                "id": run_id,
                "body": quoted(base64.b64encode(body.encode()).decode()),
                "tag": quoted(tag),  # kombu's delivery tag: one per message
                "argsrepr": quoted(run_options["argsrepr"]),
                "kwargsrepr": quoted(run_options["kwargsrepr"]),
            }
            text = [self.pieces[0]]
            for hole, piece in zip(self.holes, self.pieces[1:], strict=True):
                text += (values[hole], piece)
            texts.append("".join(text))
        return texts


def usable(app: Celery, producer: Any, runs: Sequence[Prepared]) -> bool:
    """Whether ``runs`` can take the fast path on this app and producer."""
    return (
        bool(runs)
        and producer.connection.transport.driver_type == "redis"
        and len({(run.task.name, run.queue) for run in runs}) == 1
        and (len(runs) > 1 or app.current_worker_task is None)
        and runs[0].task.meta.scope is Scope.ANY
        and not is_carried(runs[0].task)  # its name travels in the context: one shape fails
        and not any(run.canvas for run in runs)  # steps of a canvas: arguments of their own
        and not any(signal.receivers for signal in _PUBLISH_SIGNALS)
    )


_kept: WeakKeyDictionary[Celery, dict[tuple[Any, ...], Shape | None]] = WeakKeyDictionary()


def shape_for(app: Celery, producer: Any, run: Prepared, options: dict[str, Any]) -> Shape | None:
    """The shape of ``run``'s messages (kept unless a task is running), None if unsupported."""
    if app.current_worker_task is not None:  # its ids go into the message
        return _shape(app, producer, run, options)
    kept = _kept.setdefault(app, {})
    key = (os.getpid(), run.task.name, run.queue)  # a forked child has ids of its own
    if key not in kept:
        if len(kept) >= KEPT:
            kept.clear()
        kept[key] = _shape(app, producer, run, options)
    return kept[key]


def forget(**kwargs: Any) -> None:
    """Drop the kept shapes: a setting changed (Celery reads the Django settings it came from)."""
    _kept.clear()


setting_changed.connect(forget, dispatch_uid="taskkit.redis_batch.forget")


def _shape(app: Celery, producer: Any, run: Prepared, options: dict[str, Any]) -> Shape | None:
    conf = app.conf
    if conf.task_protocol != 2 or conf.task_always_eager or conf.task_send_sent_event:
        return None
    recorder = _Recorder(producer.connection)
    # duck-typed: only publish() and connection are used
    apply(app, recorder, run, options, add_to_parent=False)
    ((body, kwargs),) = recorder.calls
    if (
        kwargs.get("exchange") != ""
        or kwargs.get("priority")
        or kwargs.get("compression")
        or kwargs.get("expiration") is not None
        or body[0]
        or body[1] != run.kwargs()
        or kwargs.get("serializer") != "json"
    ):
        return None
    queue = kwargs["routing_key"]
    channel = producer.channel
    with _broker_errors(producer.connection):
        for entity in kwargs.get("declare") or ():
            producer.maybe_declare(entity)
    if upstream.declared_with_expiry(channel, queue):  # known once declared
        return None
    args, _, embed = body
    headers = {**kwargs["headers"], "id": _hole("id")}
    if not headers["parent_id"]:  # no running task: the run is its own root
        headers["root_id"] = _hole("id")
    properties = {
        key: value
        for key, value in kwargs.items()
        if key not in _PUBLISH_ARGUMENTS and key not in _REPRS
    }
    properties["correlation_id"] = _hole("id")
    properties["delivery_mode"] = maybe_delivery_mode(
        kwargs.get("delivery_mode") or producer.exchange.delivery_mode
    )
    for key in _REPRS:
        headers[key] = properties[key] = _hole(key)
    content_type, content_encoding, _ = serialization.dumps(body, serializer="json")
    message = channel.prepare_message("", 0, content_type, content_encoding, headers, properties)
    upstream.augment_message(channel, message, queue)
    message["body"] = _hole("body")
    message["properties"]["delivery_tag"] = _hole("tag")
    text = _HOLE.split(dumps(message))
    return Shape(
        queue=queue,
        body_head=f"[{dumps(args)}, ",
        body_tail=f", {dumps(embed)}]",
        pieces=tuple(text[0::2]),
        holes=tuple(text[1::2]),
    )


def publish(
    app: Celery,
    producer: Any,
    runs: Sequence[Prepared],
    options: Sequence[dict[str, Any]],
) -> bool:
    """Push ``runs``; False (nothing sent) when they need Celery's own path.

    ``options`` are the runs' ``apply_async`` options, in order; from one run to the
    next they differ only in the argument reprs, the only ones copied per run.
    """
    shape = shape_for(app, producer, runs[0], options[0])
    if shape is None:
        return False
    messages = shape.messages(runs, options)
    with _broker_errors(producer.connection), producer.channel.conn_or_acquire() as client:
        if len(messages) == 1:
            client.lpush(shape.queue, messages[0])
        else:
            with client.pipeline(transaction=False) as pipe:
                for start in range(0, len(messages), CHUNK):
                    pipe.lpush(shape.queue, *messages[start : start + CHUNK])
                pipe.execute()
    _add_to_parent(app, runs)
    return True


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
