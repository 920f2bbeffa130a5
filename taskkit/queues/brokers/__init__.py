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

__all__ = ["AmqpBroker", "Broker", "FilesystemBroker", "Match", "broker_for"]


def broker_for(connection: Connection) -> Broker:
    """The view of the broker ``connection`` talks to.

    The Redis view is imported only for a Redis broker: it needs the ``redis``
    package, which a project on the embedded broker or RabbitMQ need not install.
    """
    driver = connection.transport.driver_type
    if driver == "redis":
        from .redis import RedisBroker

        return RedisBroker(connection)
    if driver == "filesystem":
        return FilesystemBroker(connection)
    if driver == "amqp":
        return AmqpBroker(connection)
    raise QueueNotListable(
        f"taskkit cannot inspect {driver!r} brokers; it knows Redis, RabbitMQ and the "
        "embedded filesystem broker."
    )
