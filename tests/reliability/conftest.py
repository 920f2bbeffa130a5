"""Faults on servers of the tests' own: a private ``redis-server`` to kill and restart.

The machine's shared servers are never stopped (see :mod:`.servers`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import PrivateRedis, free_port

__all__ = ["PrivateRedis", "free_port", "private_redis"]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
