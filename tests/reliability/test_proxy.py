"""The proxy of the fault tests: what it forwards, and that a cut really ends live connections."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from .proxy import Proxy

pytestmark = [pytest.mark.reliability]


@pytest.fixture
def echo() -> Iterator[tuple[int, list[socket.socket]]]:
    """An echo server on a free port, and the connections it accepted."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve(connection: socket.socket) -> None:
        with connection:
            try:
                while data := connection.recv(65536):
                    connection.sendall(data)
            except OSError:
                pass

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        server.close()


@pytest.fixture
def proxy(echo: tuple[int, list[socket.socket]]) -> Iterator[Proxy]:
    proxy = Proxy("127.0.0.1", echo[0])
    try:
        yield proxy
    finally:
        proxy.close()


def connect(proxy: Proxy) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    client.sendall(b"ping")
    assert client.recv(16) == b"ping"
    return client


def is_closed(client: socket.socket) -> bool:
    """Whether the peer closed or reset the connection (``recv`` ends or fails)."""
    try:
        return client.recv(16) == b""
    except ConnectionResetError:
        return True


def is_refused(proxy: Proxy) -> bool:
    """Whether a new connection is reset (at connect, or at its first read)."""
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
            return is_closed(client)
    except ConnectionError:
        return True


def test_a_cut_closes_every_live_connection_on_both_sides(
    proxy: Proxy, echo: tuple[int, list[socket.socket]]
) -> None:
    clients = [connect(proxy) for _ in range(3)]
    assert proxy.live == 3
    assert proxy.cut() == 3
    assert all(is_closed(client) for client in clients)
    assert proxy.live == 0
    with connect(proxy):  # new connections are forwarded again at once
        assert proxy.live == 1
    for client in clients:
        client.close()


def test_down_resets_new_connections_until_up(proxy: Proxy) -> None:
    live = connect(proxy)
    proxy.down()
    assert is_refused(proxy)
    live.sendall(b"still")  # down leaves live connections alone
    assert live.recv(16) == b"still"
    proxy.up()
    with connect(proxy), live:
        pass
