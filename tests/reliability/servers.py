"""A private ``redis-server`` to kill and restart, for the reliability tests and the soak.

The machine's shared servers are never stopped. By default each private server
keeps an append-only file fsynced on every write, as an operator must configure
Redis for taskkit's promises (see the Guarantees page).
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrivateRedis:
    """One ``redis-server`` of the test's, with its data in ``folder``."""

    folder: Path
    port: int = field(default_factory=free_port)
    #: ``False``: no append-only file (a server that is never killed, e.g. the soak's).
    persistent: bool = True
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "always", "--dir", str(self.folder),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.exceptions.ConnectionError:
                # redis answers LOADING while it reads its file back: wait for it
                assert time.monotonic() < deadline, "the private redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last save; what the append-only file holds survives."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
