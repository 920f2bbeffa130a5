"""The worker's consumer: messages Celery would drop with a log line end somewhere visible.

Celery's consumer drops three kinds of message after logging them:

- one for a task this worker does not know (``Received unregistered task``):
  a web process deployed before the workers sends a new task's runs, and
  they were lost. Such a run is now a failed run, with its payload, that the
  failed runs list can retry once the workers know the task;
- one that is no Celery task message at all (no task name in its headers);
- one whose body does not decode (on RabbitMQ, where messages arrive whole:
  the Redis and embedded transports quarantine those before Celery sees them).

The last two are copied to the :data:`~taskkit.quarantine.QUARANTINE` queue,
their body as it came and the reason in a ``taskkit-problem`` header, before
Celery acknowledges them. taskkit makes this class the app's
``worker_consumer`` when a worker starts, unless the project set its own.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Queue

from ...exceptions import TaskNotFound
from ...quarantine import PROBLEM_HEADER, QUARANTINE
from .request import record_refused

logger = logging.getLogger("taskkit.worker")
CELERYS = "celery.worker.consumer:Consumer"

#: The longest the worker's event loop sleeps: how soon it heeds a stop (``SIGTERM``).
WAKE_EVERY = 1.0


def _awake() -> None:
    """Nothing: woken, the event loop checks whether the worker should stop."""


class Strategies(dict[Any, Any]):
    """Celery's handlers by task name: a name that is no string (``{"a": 1}`` in a message's
    ``task`` header) is no task this worker knows, not a ``TypeError`` in its main process."""

    def __getitem__(self, name: Any) -> Any:
        try:
            return super().__getitem__(name)
        except TypeError:  # unhashable
            raise KeyError(name) from None


class Consumer(CeleryConsumer):
    """Celery's consumer, recording or quarantining what it would drop."""

    Strategies = Strategies

    def register_with_event_loop(self, hub: Any) -> None:
        """Celery's, and a timer that wakes the event loop every :data:`WAKE_EVERY` s.

        The loop checks between events whether the worker should stop; with no
        message and no timer due, kombu's hub sleeps up to 10 s. On RabbitMQ,
        whose connection is quiet between messages, a ``SIGTERM`` (a deploy,
        ``systemctl stop``) waited up to that long before the warm shutdown began.
        """
        super().register_with_event_loop(hub)
        hub.call_repeatedly(WAKE_EVERY, _awake)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        name = headers.get("task")
        record_refused(
            headers.get("id"),
            name,
            message.delivery_info,
            self.hostname,
            "",
            error=TaskNotFound(str(name)),
            payload=_payload(body, message),
        )
        super().on_unknown_task(body, message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self.quarantine(message, "not a Celery task message: no task name in its headers")
        super().on_unknown_message(body, message)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self.quarantine(message, f"its body does not decode ({type(exc).__name__}: {exc})"[:300])
        super().on_decode_error(message, exc)

    def quarantine(self, message: Any, why: str) -> None:
        """Copy ``message`` to the quarantine queue; log if even that fails."""
        headers = message.headers if isinstance(message.headers, dict) else {}
        try:
            with self.app.producer_or_acquire() as producer:
                producer.publish(
                    message.body,
                    exchange="",
                    routing_key=QUARANTINE,
                    content_type=message.content_type or "application/octet-stream",
                    content_encoding=message.content_encoding or "binary",
                    headers={**headers, PROBLEM_HEADER: why},
                    declare=[Queue(QUARANTINE, durable=True)],
                    retry=True,
                )
        except Exception:
            logger.exception("could not move a message to %s (%s)", QUARANTINE, why)
            return
        logger.error("a message was moved to %s: %s", QUARANTINE, why)


def _payload(body: Any, message: Any) -> dict[str, Any]:
    """The payload in a Celery message's body, when it has one taskkit can retry
    (Celery hands an unknown task's body on undecoded)."""
    if body is None:
        try:
            body = message.decode()
        except Exception:  # a body that does not decode has no payload to keep
            return {}
    kwargs = body[1] if isinstance(body, list | tuple) and len(body) > 1 else None
    payload = kwargs.get("payload") if isinstance(kwargs, dict) else None
    return payload if isinstance(payload, dict) else {}


def _use(sender: Any = None, conf: Any = None, **kwargs: Any) -> None:
    if conf is not None and conf.worker_consumer == CELERYS:
        conf.worker_consumer = f"{__name__}:Consumer"


def connect() -> None:
    """Give every worker started in this process this consumer (``celeryd_init``)."""
    signals.celeryd_init.connect(_use, weak=False, dispatch_uid="taskkit.consumer")
