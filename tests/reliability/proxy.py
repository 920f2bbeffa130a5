"""A TCP proxy the test controls, to break connections to a shared server without stopping it.

The machine's RabbitMQ and PostgreSQL serve other tests too and are never
stopped. A client pointed at this proxy sees what it would see if its server
went away: :meth:`Proxy.cut` resets every live connection at once (both sides,
``SO_LINGER`` 0, so bytes still in flight are dropped, not flushed), and
:meth:`Proxy.down` resets every new connection as soon as it is accepted, until
:meth:`Proxy.up`. The proxy runs an asyncio loop in a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 seconds: close() sends RST


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s socket at once, with a reset, whatever it still had to send."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    writer.transport.abort()


class Proxy:
    """Forwards ``127.0.0.1:port`` to ``host:target_port`` until told otherwise."""

    def __init__(self, host: str, target_port: int) -> None:
        self.host = host
        self.target_port = target_port
        self.refusing = False
        self.refused = 0  # connections reset at once while down
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port: int = self._server.sockets[0].getsockname()[1]

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    @property
    def live(self) -> int:
        """How many client connections are forwarded now."""
        return len(self._pairs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await self._forward(reader, writer)
        finally:
            self._handlers.discard(handler)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.refused += 1
            _reset(writer)
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            _reset(writer)
            return
        pair = (writer, upstream)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pump(reader, upstream), self._pump(upstream_reader, writer))
        finally:
            self._pairs.discard(pair)
            _reset(writer)
            _reset(upstream)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            _reset(writer)  # one side gone: the other goes too, as a dead server's would

    async def _cut(self) -> int:
        pairs, self._pairs = self._pairs, set()
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)
        return len(pairs)

    def cut(self) -> int:
        """Reset every live connection, both sides; return how many there were."""
        return self._call(self._cut())

    def down(self) -> None:
        """Reset new connections as soon as they are accepted (live ones are left alone)."""
        self.refusing = True

    def up(self) -> None:
        """Forward new connections again."""
        self.refusing = False

    async def _close(self) -> None:
        self._server.close()
        await self._cut()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        await self._server.wait_closed()

    def close(self) -> None:
        """Stop listening, reset every connection and stop the thread."""
        self.down()
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
