"""What each broker lets taskkit see and remove of a queue, without consuming it.

One view per kombu transport, each in a module of its own: :mod:`.redis`
(everything), :mod:`.filesystem` (the embedded broker: everything) and
:mod:`.amqp` (RabbitMQ: counts and purges; deletes become cancellations).
"""

from __future__ import annotations

from kombu import Connection

from ...exceptions import QueueNotListable
from .amqp import AmqpBroker
from .base import Broker, Match
from .filesystem import FilesystemBroker
from .redis import RedisBroker

__all__ = ["AmqpBroker", "Broker", "FilesystemBroker", "Match", "RedisBroker", "broker_for"]

BROKERS: dict[str, type[RedisBroker] | type[FilesystemBroker] | type[AmqpBroker]] = {
    "redis": RedisBroker,
    "filesystem": FilesystemBroker,
    "amqp": AmqpBroker,
}


def broker_for(connection: Connection) -> Broker:
    """The view of the broker ``connection`` talks to."""
    driver = connection.transport.driver_type
    try:
        return BROKERS[driver](connection)
    except KeyError:
        raise QueueNotListable(
            f"taskkit cannot inspect {driver!r} brokers; it knows Redis, RabbitMQ and the "
            "embedded filesystem broker."
        ) from None
