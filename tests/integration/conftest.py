"""A real Celery worker per broker: filesystem (embedded default), Redis and RabbitMQ.

Each broker gets its own Celery app in this process (made current, so enqueue
publishes through it) and one worker subprocess on the same file-backed test
database. A broker that is not running fails these tests; they never skip.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from celery import Celery
from celery import current_app as celery_current_app
from kombu import Queue

import taskkit
from taskkit.embedded import celery_settings

REPO = Path(__file__).resolve().parents[2]
QUEUES = ("default", "maintenance", "special")
#: ``TASKKIT_TEST_REDIS_URL`` and ``TASKKIT_TEST_RABBITMQ_URL`` name another Redis database
#: or RabbitMQ vhost, so two test runs on one machine do not take each other's messages.
BROKERS = {
    "filesystem": "filesystem://",
    "redis": os.environ.get("TASKKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    "rabbitmq": os.environ.get("TASKKIT_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}
#: The brokers the integration tests run on: all of them, unless ``TASKKIT_TEST_BROKERS``
#: names fewer (the Django 5.2 pass of ``.ci/run`` takes Redis only: brokers do not
#: depend on the Django version, and the first passes run every broker).
TESTED = os.environ.get("TASKKIT_TEST_BROKERS", ",".join(BROKERS)).split(",")
if not TESTED or not set(TESTED) <= set(BROKERS):
    raise ValueError(f"TASKKIT_TEST_BROKERS: a comma-separated list of {', '.join(BROKERS)}")


@dataclass
class Broker:
    name: str
    url: str
    options: dict[str, Any]
    app: Celery


def transport_settings(name: str, folder: Path) -> dict[str, Any]:
    """Celery settings (lower case) of the broker besides its URL."""
    if name != "filesystem":
        return {}
    embedded = celery_settings(folder, polling_interval=0.05)
    return {
        "broker_transport": embedded["CELERY_BROKER_TRANSPORT"],
        "broker_transport_options": embedded["CELERY_BROKER_TRANSPORT_OPTIONS"],
    }


def make_app(name: str, url: str, **conf: Any) -> Celery:
    """A Celery app configured like the project's, on another broker."""
    app = Celery(name, set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.update(broker_url=url, broker_connection_retry_on_startup=False, **conf)
    return app


@contextmanager
def current(app: Celery) -> Iterator[Celery]:
    """Make ``app`` Celery's current and default app (for every thread), so taskkit uses it."""
    previous = cast(Any, celery_current_app)._get_current_object()
    app.set_current()
    app.set_default()
    try:
        yield app
    finally:
        previous.set_current()
        previous.set_default()


def purge(app: Celery) -> None:
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for name in QUEUES:
            Queue(name).bind(channel).declare()
            Queue(name).bind(channel).purge()


@pytest.fixture(scope="package", params=TESTED)
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    name: str = request.param
    if name == "redis":  # the tests' own database: what earlier tests and runs left is gone
        with redis.Redis.from_url(BROKERS[name]) as client:
            client.flushdb()
    options = transport_settings(name, tmp_path_factory.mktemp(f"broker-{name}"))
    app = make_app(f"taskkit-tests-{name}", BROKERS[name], **options)
    purge(app)
    with current(app):
        yield Broker(name, BROKERS[name], options, app)
    app.close()


def worker_env(broker: Broker, *, measured: bool = True) -> dict[str, str]:
    """The environment of a worker subprocess on ``broker``, on the test database.

    ``measured=False``: coverage does not follow it, for a worker that runs
    thousands of runs whose lines other tests measure (tracing slows it down
    several times).
    """
    inherited = {
        key: value
        for key, value in os.environ.items()
        if measured or key != "COVERAGE_PROCESS_CONFIG"
    }
    return {
        **inherited,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TASKKIT_TEST_BROKER": broker.url,
        "TASKKIT_TEST_BROKER_SETTINGS": repr(broker.options),
        "PYTHONPATH": str(REPO),
    }


def start_worker(
    broker: Broker,
    label: str,
    queues: tuple[str, ...] = QUEUES,
    pool: str = "threads",
    *,
    measured: bool = True,
) -> subprocess.Popen[str]:
    """A worker subprocess on ``broker`` consuming ``queues`` (and broadcasts); see
    :func:`worker_env` for ``measured``."""
    env = worker_env(broker, measured=measured)
    command = [
        sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
        "-Q", ",".join(queues), "-P", pool, "-c", "4" if pool == "threads" else "1",
        "-l", "warning",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"{label}-{broker.name}-{uuid.uuid4().hex[:6]}@%h",
    ]  # fmt: skip
    if label == "test":  # the first worker also runs taskkit's Beat
        command += ["-B", "--scheduler", "taskkit.scheduler:Scheduler"]
    # its own process group: stopping it stops its children too (the embedded Beat)
    return subprocess.Popen(command, cwd=REPO, env=env, text=True, start_new_session=True)


def stop(process: subprocess.Popen[str]) -> None:
    """Stop a worker and every process it started, and wait until they are all gone.

    A child still alive would keep its database connection, and PostgreSQL would
    refuse to drop the test database at the end of the run.
    """
    group = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)  # anyone left in the group?
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


@pytest.fixture(scope="package")  # gone before the unit tests: its Beat would promote their rows
def worker(
    broker: Broker, django_db_setup: Any, django_db_blocker: Any
) -> Iterator[subprocess.Popen[str]]:
    """One worker (with Beat) on ``broker``, started once per broker for this package."""
    process = start_worker(broker, "test")
    try:
        with django_db_blocker.unblock():
            probe = taskkit.enqueue("echo:payload", {"probe": broker.name})
            assert probe.result(timeout=60) == {"probe": broker.name}
        yield process
    finally:
        stop(process)


@pytest.fixture
def second_worker(broker: Broker, worker: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Another worker on the same broker, for tests about more than one worker."""
    process = start_worker(broker, "second")
    try:
        yield process
    finally:
        stop(process)
