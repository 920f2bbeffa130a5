"""A ``*`` worker takes up the queues named after it started, without a restart.

``taskworker --queues '*'`` consumes the queues taskkit knows of when it
starts. An enqueue to a queue no one named before (``queue="reports-eu"``)
adds it to :class:`~taskkit.models.KnownQueue` once the broker took the run;
the main process of a ``*`` worker reads that table every :data:`POLL`
seconds and starts consuming each name it does not consume yet, as Celery's
``add_consumer`` remote command does, in the consumer's own thread (kombu's
connections are not shared between threads). The other sources of known
queues (the settings, the tasks' meta) do not change while a worker runs.

Names against the queue rule are never taken up: the broker's and Celery's
own, taskkit's broadcast exchange and ``taskkit.quarantine`` among them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import signals
from django.db import close_old_connections, connections

from ...definition.names import validate_queue_name
from ...models import KnownQueue
from .about import describe
from .heartbeat import heart

logger = logging.getLogger("taskkit.worker")

#: Seconds between two reads of the known queues.
POLL = 2.0


def takeable(name: str) -> bool:
    """Whether a ``*`` worker may consume ``name``: a name the queue rule allows."""
    try:
        validate_queue_name(name)
    except ValueError:
        return False
    return True


def consumed(consumer: Any) -> set[str]:
    """The queues ``consumer`` consumes or was asked to (the app's selected queues)."""
    return set(consumer.app.amqp.queues.consume_from)


def take_up(consumer: Any, asked: set[str]) -> list[str]:
    """Ask ``consumer`` to consume every known queue it does not yet; return the new names.

    ``asked`` holds the names asked for already, so each is asked once.
    """
    new = sorted(
        name
        for name in KnownQueue.objects.values_list("name", flat=True)
        if name not in asked and takeable(name)
    )
    for name in new:
        asked.add(name)
        # runs in the consumer's thread: Celery's add_consumer remote command does the same
        consumer.call_soon(consumer.add_task_queue, name)
        logger.info("%s takes up the queue %s", consumer.hostname, name)
    return new


def _tell_heart(consumer: Any) -> None:
    """Let the next heartbeat list the queues taken up (the consumer adds them in its thread,
    so the ones asked for in this round show in the next)."""
    if heart.about is not None:
        now = describe(consumer)
        if now.queues != heart.about.queues:
            heart.about = now


class Watch:
    """The thread of a ``*`` worker's main process that takes up new queues."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, consumer: Any) -> None:
        if self._thread is not None:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, args=(consumer,), name="taskkit-queues", daemon=True
        )
        self._thread.start()

    def _loop(self, consumer: Any) -> None:
        asked = consumed(consumer)
        try:
            while not self._stop.wait(POLL):
                try:
                    take_up(consumer, asked)
                    _tell_heart(consumer)
                except Exception:  # the database may be away for a moment
                    logger.exception("could not read the known queues")
                    close_old_connections()
        finally:
            connections.close_all()  # this thread's connections

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None


watch = Watch()


def _start(sender: Any = None, **kwargs: Any) -> None:
    if sender is not None:
        watch.start(sender)


def _stop(**kwargs: Any) -> None:
    watch.stop()


def follow_known_queues() -> None:
    """Make the worker started next in this process a ``*`` worker: it takes up new queues.

    ``taskworker --queues '*'`` calls it before it starts the worker; the
    thread runs in the worker's main process (``worker_ready``).
    """
    signals.worker_ready.connect(_start, weak=False, dispatch_uid="taskkit.live_queues")
    signals.worker_shutdown.connect(_stop, weak=False, dispatch_uid="taskkit.live_queues_stop")
