"""Faults on servers of the tests' own: a private ``redis-server`` to kill and restart,
a private RabbitMQ vhost behind a proxy whose connections the test cuts.

The machine's shared servers are never stopped. Each private server keeps an
append-only file fsynced on every write, as an operator must configure Redis
for taskkit's promises (see the Guarantees page).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.apps.nested.tasks.echo.count import COUNTS_URL
from tests.integration.conftest import REPO

from .proxy import Proxy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrivateRedis:
    """One ``redis-server`` of the test's, with its data in ``folder``."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--dir", str(self.folder),
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


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()


def start_beat(broker_url: str) -> subprocess.Popen[str]:
    """A ``celery beat`` with taskkit's scheduler, on the test database; stop it with ``stop``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TASKKIT_TEST_BROKER": broker_url,
        "PYTHONPATH": str(REPO),
    }
    command = [
        sys.executable, "-m", "celery", "-A", "tests.celery_app", "beat",
        "--scheduler", "taskkit.scheduler:Scheduler", "-s", os.devnull, "-l", "warning",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, env=env, text=True, start_new_session=True)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def rabbitmq_vhost() -> Iterator[str]:
    """A private vhost on the shared RabbitMQ (guest may use it), deleted afterwards."""
    name = f"taskkit_rel_{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


@pytest.fixture
def rabbitmq_proxy() -> Iterator[Proxy]:
    """A proxy to the shared RabbitMQ."""
    proxy = Proxy("127.0.0.1", 5672)
    try:
        yield proxy
    finally:
        proxy.close()


def recorded(key: str, wanted: int, timeout: float = 60) -> list[str]:
    """The lines the crash tasks pushed to ``key``, once there are ``wanted`` of them."""
    counts = redis.Redis.from_url(COUNTS_URL, decode_responses=True)
    try:
        deadline = time.monotonic() + timeout
        while counts.llen(key) < wanted:
            assert time.monotonic() < deadline, counts.lrange(key, 0, -1)
            time.sleep(0.05)
        return [str(line) for line in counts.lrange(key, 0, -1)]
    finally:
        counts.close()
