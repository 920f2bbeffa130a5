"""Faults on servers of the tests' own: a private ``redis-server`` to kill and restart,
a private RabbitMQ vhost behind a proxy whose connections the test cuts.

The machine's shared servers are never stopped (see :mod:`.servers`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.apps.nested.tasks.echo.count import COUNTS_URL
from tests.integration.conftest import REPO

from .proxy import Proxy
from .servers import PrivateRedis, free_port

__all__ = ["PrivateRedis", "free_port", "private_redis", "recorded", "start_beat"]


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
