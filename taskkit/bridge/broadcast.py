"""``scope="all"``: one message, run once by every worker that is up when it is sent.

The message goes to a fanout exchange; each worker consumes its own auto-deleted
queue bound to it. A worker that is offline at that moment misses the run: a
broadcast is not stored anywhere for later.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery.signals import celeryd_after_setup
from kombu import Exchange
from kombu.common import Broadcast

NAME = "taskkit.broadcast"
EXCHANGE = Exchange(NAME, type="fanout", durable=False)


def worker_queue() -> Broadcast:
    """This worker's own queue on the broadcast exchange."""
    return Broadcast(NAME, unique=True, exchange=EXCHANGE, routing_key=NAME)


def publish_options() -> dict[str, Any]:
    """``apply_async`` options that send a message to every worker.

    The routing key matches the workers' bindings: Redis's fanout publishes to a
    PUB/SUB topic named after exchange and routing key.
    """
    return {"exchange": EXCHANGE, "routing_key": NAME, "declare": [EXCHANGE]}


def worker_run_id(message_run_id: str, hostname: str) -> str:
    """The id of one worker's run of a broadcast: stable per message and worker."""
    return str(uuid.uuid5(uuid.UUID(message_run_id), hostname))


def _consume(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
    instance.app.amqp.queues.select_add(worker_queue())


def connect() -> None:
    """Make every worker started in this process consume broadcasts too."""
    celeryd_after_setup.connect(_consume, weak=False, dispatch_uid="taskkit.broadcast")
