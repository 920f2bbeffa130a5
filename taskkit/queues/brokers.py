"""What each broker lets taskkit see and remove of a queue, without consuming it.

- **Redis** (kombu's layout): a list per queue, plus one per priority step
  (``queue\\x06\\x16N``); a worker takes from the right end of the first
  non-empty list. Pages are ``LRANGE`` slices; a message is removed with
  ``LREM`` of its exact bytes. A whole queue is never loaded at once.
- **Filesystem** (the embedded broker): a file per message, taken in the order
  of the file names; removing a message removes its file.
- **RabbitMQ**: AMQP can count (a passive declare) and purge a queue, but not
  show or remove one message; deletes there become cancellations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from kombu import Connection

from ..exceptions import TaskkitError
from .messages import QueuedMessage, decode

#: Messages read per Redis command while scanning a queue.
CHUNK = 1_000


class QueueNotListable(TaskkitError):
    """The broker cannot show single messages of a queue (HTTP 501)."""

    status_code = 501


class Broker(Protocol):
    """One broker's view of its queues."""

    name: str
    #: Whether single messages can be listed and removed.
    listable: bool

    def queues(self) -> set[str]:
        """The queues the broker itself reveals (none for AMQP)."""

    def length(self, queue: str) -> int:
        """How many messages wait in ``queue``."""

    def scan(self, queue: str, start: int = 0) -> Iterator[QueuedMessage]:
        """The messages of ``queue`` from position ``start`` on, next to be taken first."""

    def remove(self, message: QueuedMessage) -> bool:
        """Remove that very message; ``False`` if a worker took it first."""

    def purge(self, queue: str) -> int:
        """Remove every message of ``queue``; return how many."""


class RedisBroker:
    name = "redis"
    listable = True

    def __init__(self, connection: Connection) -> None:
        channel: Any = connection.default_channel  # kombu's Redis channel
        self.channel = channel
        self.client: Any = channel.client

    def _keys(self, queue: str) -> list[str]:
        """The queue's lists in the order a worker empties them."""
        steps = sorted(set(self.channel.priority_steps))
        return [self.channel._q_for_pri(queue, step) for step in steps]

    def queues(self) -> set[str]:
        prefix = self.channel.keyprefix_queue.split("%s")[0]
        return {
            key.decode()[len(prefix) :] if isinstance(key, bytes) else str(key)[len(prefix) :]
            for key in self.client.scan_iter(match=f"{prefix}*", count=1_000)
        }

    def length(self, queue: str) -> int:
        with self.client.pipeline(transaction=False) as pipe:
            for key in self._keys(queue):
                pipe.llen(key)
            return sum(pipe.execute())

    def scan(self, queue: str, start: int = 0) -> Iterator[QueuedMessage]:
        position = 0
        for key in self._keys(queue):
            size = self.client.llen(key)
            offset = max(start - position, 0)  # from the right end, which is taken first
            while offset < size:
                stop = min(offset + CHUNK, size)
                chunk = self.client.lrange(key, -stop, -offset - 1)
                for index, raw in enumerate(reversed(chunk)):
                    message = decode(raw, queue, position + offset + index, location=key)
                    if message is not None:
                        yield message
                offset = stop
            position += size

    def remove(self, message: QueuedMessage) -> bool:
        return bool(self.client.lrem(message.location, 1, message.raw))

    def purge(self, queue: str) -> int:
        removed = self.length(queue)
        self.client.delete(*self._keys(queue))
        return removed


class FilesystemBroker:
    name = "filesystem"
    listable = True

    def __init__(self, connection: Connection) -> None:
        options = connection.transport_options or {}
        self.folder = Path(options.get("data_folder_in") or options.get("data_folder_out") or ".")

    def _names(self) -> list[str]:
        try:
            return [path.name for path in self.folder.iterdir()]
        except FileNotFoundError:
            return []

    def _files(self, queue: str) -> list[str]:
        """The queue's message files, in the order kombu's reader takes them."""
        return sorted(name for name in self._names() if name.partition(".")[2] == f"{queue}.msg")

    def queues(self) -> set[str]:
        return {
            name.partition(".")[2].removesuffix(".msg")
            for name in self._names()
            if name.endswith(".msg") and not name.startswith(".")
        }

    def length(self, queue: str) -> int:
        return len(self._files(queue))

    def scan(self, queue: str, start: int = 0) -> Iterator[QueuedMessage]:
        for position, name in enumerate(self._files(queue)[start:], start=start):
            path = self.folder / name
            try:
                raw = path.read_bytes()
            except FileNotFoundError:  # a worker took it meanwhile
                continue
            message = decode(raw, queue, position, location=str(path))
            if message is not None:
                yield message

    def remove(self, message: QueuedMessage) -> bool:
        try:
            Path(message.location).unlink()
        except FileNotFoundError:
            return False
        return True

    def purge(self, queue: str) -> int:
        removed = 0
        for name in self._files(queue):
            try:
                (self.folder / name).unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed


class AmqpBroker:
    name = "amqp"
    listable = False

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def queues(self) -> set[str]:
        return set()

    def length(self, queue: str) -> int:
        channel: Any = self.connection.channel()
        try:
            _, count, _ = channel.queue_declare(queue=queue, passive=True)
        except self.connection.channel_errors:  # no such queue: nothing waits in it
            return 0
        finally:
            _close(channel)
        return int(count)

    def scan(self, queue: str, start: int = 0) -> Iterator[QueuedMessage]:
        raise QueueNotListable(
            f"RabbitMQ cannot show the messages of {queue!r} without taking them; "
            "its length is in `taskqueue details`."
        )

    def remove(self, message: QueuedMessage) -> bool:
        raise QueueNotListable("RabbitMQ cannot remove one message from a queue.")

    def purge(self, queue: str) -> int:
        channel: Any = self.connection.channel()
        try:
            return int(channel.queue_purge(queue) or 0)
        except self.connection.channel_errors:
            return 0
        finally:
            _close(channel)


def _close(channel: Any) -> None:
    with contextlib.suppress(Exception):  # a channel the broker closed (no such queue)
        channel.close()


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
