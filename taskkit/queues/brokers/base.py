"""What every broker view offers, and what they share."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ..messages import QueuedMessage
from ..sieve import EVERYTHING, Sieve

#: Whether a decoded message is one to remove.
Match = Callable[[QueuedMessage], bool]


@dataclass(frozen=True, slots=True)
class BrokerMemory:
    """What the broker's server uses of its memory, and what it does at its limit."""

    #: Bytes in use.
    used: int
    #: Bytes it may use (Redis' ``maxmemory``); 0: no limit.
    limit: int
    #: What it does at the limit (Redis' ``maxmemory-policy``).
    policy: str
    #: What the server says blocks publishers now (RabbitMQ's memory or disk alarm).
    alarm: str = ""


class Broker(Protocol):
    """One broker's view of its queues."""

    name: str
    #: Whether single messages can be listed and removed.
    listable: bool

    def queues(self) -> set[str]:
        """The queues the broker itself reveals (for RabbitMQ, only through its management API)."""

    def length(self, queue: str) -> int:
        """How many messages wait in ``queue``."""

    def scan(
        self, queue: str, start: int = 0, sieve: Sieve = EVERYTHING
    ) -> Iterator[QueuedMessage]:
        """The messages of ``queue`` from position ``start`` on, next to be taken first.

        Messages ``sieve`` rules out are skipped undecoded.
        """

    def delete(self, queue: str, match: Match, sieve: Sieve = EVERYTHING, limit: int = 0) -> int:
        """Remove the messages of ``queue`` that ``match`` (at most ``limit``, 0: all)."""

    def held(self, sieve: Sieve = EVERYTHING) -> Iterator[QueuedMessage]:
        """Messages workers took but have not acknowledged yet, where the broker shows them."""

    def purge(self, queue: str) -> int:
        """Remove every message of ``queue``; return how many."""

    def memory(self) -> BrokerMemory | None:
        """The server's memory and its limit; ``None`` where it is not measured."""


#: A worker's own queue on a fanout exchange (kombu's ``Broadcast(unique=True)``).
_BROADCAST = re.compile(r"bcast\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def celery_own(name: str) -> bool:
    """Celery's remote control (``*.pidbox``), events (``celeryev*``) and a worker's broadcast
    queue (``bcast.<uuid>``, which the broker may keep after the worker left): not work."""
    return (
        name.endswith("pidbox") or name.startswith("celeryev") or bool(_BROADCAST.fullmatch(name))
    )


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
