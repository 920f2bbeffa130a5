"""Redis commands in flight: sent at once, their replies read later, in order.

A scan spends most of its time in Python, reading replies and sieving them,
and Redis most of its time reading the list; one command at a time, each
waits for the other. On a link, the next chunk is asked for before the
current one is sieved, and a delete's removal runs while the scan reads on.
The commands share one connection, so Redis runs them in the order they were
sent: a chunk asked for before a removal reads the list as it was before it.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import Any, Protocol

from redis.exceptions import ResponseError


class Reply:
    """What Redis answers to one command, once read."""

    __slots__ = ("_link", "_ready", "_value")

    def __init__(self, link: Link | None = None, value: Any = None) -> None:
        self._link = link
        self._ready = link is None
        self._value = value

    @classmethod
    def of(cls, value: Any) -> Reply:
        """A reply already there: for a command run at once."""
        return cls(None, value)

    def get(self) -> Any:
        """The reply, read (with those of the commands sent before it) if need be.

        An error Redis answered is raised here, for this command only.
        """
        while not self._ready:
            assert self._link is not None
            self._link.read_one()
        if isinstance(self._value, BaseException):
            raise self._value
        return self._value


class Sender(Protocol):
    """What sends commands and answers each with a :class:`Reply`: a :class:`Link`."""

    def send(self, *args: Any) -> Reply: ...


class Link:
    """One connection of ``client``'s pool, held while commands are in flight on it.

    A context manager: leaving it reads what is still unread, so every command
    sent has run when it returns, and gives the connection back. A connection
    that failed is dropped instead, and the replies still unread raise that failure.
    """

    def __init__(self, client: Any) -> None:
        self.pool = client.connection_pool
        self.connection: Any = None
        self.waiting: deque[Reply] = deque()

    def send(self, *args: Any) -> Reply:
        if self.connection is None:
            self.connection = self.pool.get_connection()
        try:
            self.connection.send_command(*args)
        except BaseException as exc:
            self._broken(exc)
            raise
        reply = Reply(self)
        self.waiting.append(reply)
        return reply

    def read_one(self) -> None:
        reply = self.waiting.popleft()
        try:
            reply._value = self.connection.read_response()
        except ResponseError as exc:  # an answer: the connection is still in step
            reply._value = exc
        except BaseException as exc:
            reply._value = exc
            reply._ready = True
            self._broken(exc)
            raise
        reply._ready = True

    def _broken(self, exc: BaseException) -> None:
        for reply in self.waiting:
            reply._value, reply._ready = exc, True
        self.waiting.clear()
        if self.connection is not None:
            self.connection.disconnect()
            self.pool.release(self.connection)
            self.connection = None

    def close(self) -> None:
        try:
            while self.waiting:
                self.read_one()
        finally:
            if self.connection is not None:
                self.pool.release(self.connection)
                self.connection = None

    def __enter__(self) -> Link:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and self.waiting:
            self._broken(exc)  # not worth reading: the connection goes
        else:
            self.close()
