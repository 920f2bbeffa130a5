"""Faults on servers of the tests' own: a private ``redis-server`` to kill and restart,
a private RabbitMQ vhost behind a proxy whose connections the test cuts, a private
PostgreSQL database.

The machine's shared servers are never stopped (see :mod:`.servers`).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from taskkit.models import RunStatus, TaskRun
from tests.apps.nested.tasks.echo.count import COUNTS_URL
from tests.integration.conftest import Broker, current, make_app

from .postgres import private_database
from .processes import start_beat
from .proxy import Proxy
from .servers import PrivateRedis, free_port

__all__ = [
    "PrivateRedis",
    "counted",
    "forget",
    "free_port",
    "on_broker",
    "private_redis",
    "recorded",
    "row_once",
    "start_beat",
]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()


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


@pytest.fixture(params=["redis", "rabbitmq"])
def private_url(request: pytest.FixtureRequest) -> str:
    """A private broker of each kind: a ``redis-server`` of the test's, a RabbitMQ vhost of its
    own (so a queue is new to it whatever other tests did)."""
    if request.param == "redis":
        return str(request.getfixturevalue("private_redis").url)
    return f"amqp://guest:guest@127.0.0.1:5672/{request.getfixturevalue('rabbitmq_vhost')}"


@pytest.fixture
def database() -> Iterator[str]:
    """A private PostgreSQL database, migrated; dropped afterwards."""
    with private_database() as name:
        yield name


@contextmanager
def on_broker(name: str, url: str, **options: Any) -> Iterator[Broker]:
    """An app ``name`` on ``url`` (with Celery ``options``) made current; closed afterwards."""
    app = make_app(name, url, **options)
    scheme = url.partition(":")[0]
    kind = {"amqp": "rabbitmq", "filesystem": "filesystem"}.get(scheme, "redis")
    try:
        with current(app):
            yield Broker(kind, url, options, app)
    finally:
        app.close()


def row_once(
    run_id: str,
    *wanted: RunStatus,
    timeout: float,
    meanwhile: Callable[[], object] | None = None,
) -> TaskRun:
    """The run's row once its status is one of ``wanted``; ``meanwhile`` called while waiting."""
    deadline = time.monotonic() + timeout
    while (row := TaskRun.objects.filter(pk=run_id).first()) is None or row.status not in wanted:
        assert time.monotonic() < deadline, row and row.status
        if meanwhile is not None:
            meanwhile()
        time.sleep(0.05)
    return row


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


def counted(key: str, wanted: int, timeout: float) -> list[str]:
    """The run ids counted in ``key`` once there are ``wanted`` or ``timeout`` passed (the
    test tells what is missing), a second later: a run sent twice shows by then."""
    counts = redis.Redis.from_url(COUNTS_URL, decode_responses=True)
    try:
        deadline = time.monotonic() + timeout
        while counts.llen(key) < wanted and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        return [str(line) for line in counts.lrange(key, 0, -1)]
    finally:
        counts.close()


def forget(key: str) -> None:
    """Delete the counts list ``key``."""
    counts = redis.Redis.from_url(COUNTS_URL)
    try:
        counts.delete(key)
    finally:
        counts.close()
