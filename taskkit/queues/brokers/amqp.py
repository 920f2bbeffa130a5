"""RabbitMQ: AMQP can count (a passive declare) and purge a queue, but not show or remove one
message; deletes there become cancellations. Its management API, when reachable, names
the queues of the virtual host.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from kombu import Connection

from ...exceptions import QueueNotListable
from ..messages import QueuedMessage
from ..rabbitmq_api import node_memory, queue_names
from ..sieve import EVERYTHING, Sieve
from .base import BrokerMemory, Match, celery_own


class AmqpBroker:
    name = "amqp"
    listable = False

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def queues(self) -> set[str]:
        """What RabbitMQ's management API shows, when it is reachable (AMQP shows nothing)."""
        return {queue for queue in queue_names(self.connection) if not celery_own(queue)}

    def length(self, queue: str) -> int:
        channel: Any = self.connection.channel()
        try:
            _, count, _ = channel.queue_declare(queue=queue, passive=True)
        except self.connection.channel_errors:  # no such queue: nothing waits in it
            return 0
        finally:
            _close(channel)
        return int(count)

    def scan(
        self, queue: str, start: int = 0, sieve: Sieve = EVERYTHING
    ) -> Iterator[QueuedMessage]:
        raise QueueNotListable(
            f"RabbitMQ cannot show the messages of {queue!r} without taking them; "
            "its length is in `taskqueue details`."
        )

    def delete(self, queue: str, match: Match, sieve: Sieve = EVERYTHING, limit: int = 0) -> int:
        raise QueueNotListable("RabbitMQ cannot remove one message from a queue.")

    def held(self, sieve: Sieve = EVERYTHING) -> Iterator[QueuedMessage]:
        return iter(())  # AMQP shows no one else's unacknowledged messages

    def purge(self, queue: str) -> int:
        channel: Any = self.connection.channel()
        try:
            return int(channel.queue_purge(queue) or 0)
        except self.connection.channel_errors:
            return 0
        finally:
            _close(channel)

    def memory(self) -> BrokerMemory | None:
        return node_memory(self.connection)


def _close(channel: Any) -> None:
    with contextlib.suppress(Exception):  # a channel the broker closed (no such queue)
        channel.close()
