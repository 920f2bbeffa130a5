"""The health checks fail for real, each with its dependency stopped, on the tests' own servers.

``manage.py taskqueue health --json`` as a probe runs it: exit 0 while the
private ``redis-server`` broker is up, exit 1 naming ``broker`` once it is
killed; exit 1 naming ``database`` while the proxy to a private PostgreSQL
database refuses and resets connections, and 0 again once it forwards them. A
real Beat killed outright fails ``scheduler`` once its lease runs out, and the
Beat that leads next counts as the lease's first change; a real
worker killed outright fails ``workers`` once its heartbeat is too old, and
while it lives, a queue it does not consume but that holds a message fails
``consumers``. Every probe runs with a deadline: a check that hung would fail
the test, not stall it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

import taskkit
from taskkit import queues
from taskkit.bridge.work import heartbeat
from taskkit.scheduling import lease
from tests.integration.conftest import REPO, Broker, current, make_app, start_worker, stop

from .conftest import PrivateRedis, start_beat
from .proxy import Proxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
#: The most a probe may take before the test calls it hung (a probe's own timeout is shorter).
PROBE_DEADLINE = 60
TIMEOUT = 30
LOST_AFTER = 2.0
MANAGE = (
    "import sys, tests.celery_app; from django.core.management import execute_from_command_line; "
    "execute_from_command_line(['manage.py', *sys.argv[1:]])"
)


def probe(env: dict[str, str], *checks: str) -> tuple[int, dict[str, tuple[bool, str]]]:
    """``taskqueue health --json`` in a process of its own: its exit code and its checks."""
    options = [arg for check in checks for arg in ("--check", check)]
    done = subprocess.run(
        [sys.executable, "-c", MANAGE, "taskqueue", "health", "--json", *options],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=PROBE_DEADLINE,
    )  # fmt: skip
    body = json.loads(done.stdout)
    found = {check["name"]: (check["ok"], check["detail"]) for check in body["checks"]}
    assert body["ok"] is (done.returncode == 0), (done.returncode, done.stderr[-2000:])
    return done.returncode, found


def probe_env(broker_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TASKKIT_TEST_BROKER": broker_url,
        "PYTHONPATH": str(REPO),
        **extra,
    }


@pytest.fixture
def broker(private_redis: PrivateRedis) -> Iterator[Broker]:
    """The private broker made current, and this process's ``WORKER_LOST_AFTER`` the workers'."""
    app = make_app("reliability-health", private_redis.url)
    lost_after = override_settings(TASKKIT={**settings.TASKKIT, "WORKER_LOST_AFTER": LOST_AFTER})
    try:
        with current(app), lost_after:
            yield Broker("redis", private_redis.url, {}, app)
    finally:
        app.close()


def test_the_broker_killed_fails_its_check_and_the_probe_exits_1(
    broker: Broker, private_redis: PrivateRedis
) -> None:
    assert lease.hold(lease.BEAT, "beat-host:1:cafe", timedelta(minutes=5))
    assert heartbeat.beat("alive@host", timezone.now(), "h:1:a")
    env = probe_env(private_redis.url)
    code, found = probe(env)
    assert code == 0, found
    assert found["broker"][1].startswith("redis answered in "), found

    private_redis.kill()
    code, found = probe(env)
    assert code == 1
    assert [name for name, (ok, _) in found.items() if not ok] == ["broker", "consumers"]
    assert "unreachable" in found["broker"][1], found["broker"]
    assert str(private_redis.port) in found["broker"][1]
    code, live = probe(env, "database", "broker")  # a liveness probe fails with it
    assert code == 1 and not live["broker"][0] and live["database"][0]


# The database, behind a proxy


def postgres(database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host="127.0.0.1", user="postgres", dbname=database, autocommit=True)


def database_env(database: str, port: int, broker_url: str) -> dict[str, str]:
    return probe_env(
        broker_url,
        TASKKIT_TEST_DATABASE="postgres",
        TASKKIT_TEST_PG_NAME=database,
        TASKKIT_TEST_PG_PORT=str(port),
    )


@pytest.fixture
def database(private_redis: PrivateRedis) -> Iterator[str]:
    """A private PostgreSQL database, migrated; dropped afterwards."""
    name = f"taskkit_rel_{uuid.uuid4().hex[:12]}"
    with postgres() as server:
        server.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate = [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"]
        env = database_env(name, 5432, private_redis.url)
        subprocess.run(migrate, cwd=REPO, env=env, check=True, timeout=120)
        yield name
    finally:
        with postgres() as server:
            server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_the_database_cut_fails_its_check_and_the_probe_exits_1(
    database: str, private_redis: PrivateRedis
) -> None:
    proxy = Proxy("127.0.0.1", 5432)
    try:
        env = database_env(database, proxy.port, private_redis.url)
        code, found = probe(env, "database", "broker")
        assert code == 0, found
        assert found["database"][1].startswith("default answered in ")

        proxy.down()  # every new connection reset at once
        proxy.cut()
        code, found = probe(env, "database", "broker")
        assert code == 1
        assert not found["database"][0] and found["broker"][0], found
        assert found["database"][1].startswith("the database failed: OperationalError"), found
        assert proxy.refused > 0
        code, everything = probe(env)  # every check that reads the tables fails, none hangs
        assert code == 1
        failed = {name for name, (ok, _) in everything.items() if not ok}
        assert {"database", "scheduler", "workers", "consumers", "delayed"} <= failed
        assert everything["broker"][0]

        proxy.up()
        code, found = probe(env, "database", "broker")
        assert code == 0, found
    finally:
        proxy.close()


# Beat and the workers, killed outright


def until(check: str, ok: bool) -> str:
    """The ``check``'s detail once it is ``ok`` (within :data:`TIMEOUT`)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        (found,) = queues.health([check]).checks
        if found.ok is ok:
            return found.detail
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL the process and its children: no release, no last heartbeat, no goodbye."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def test_the_leader_killed_fails_the_scheduler_check_and_the_next_one_is_a_change(
    broker: Broker,
) -> None:
    assert not queues.health(["scheduler"]).ok  # nobody leads yet
    beat = start_beat(broker.url)
    try:
        detail = until("scheduler", True)
        assert " leads; its lease runs " in detail
        assert lease.changes(lease.BEAT) == 0  # the first leader is no change
        kill(beat)
        detail = until("scheduler", False)
        assert detail.startswith("no leader: the lease of ") and " expired " in detail
    finally:
        stop(beat)
    successor = start_beat(broker.url)
    try:
        until("scheduler", True)
        assert lease.changes(lease.BEAT) == 1
    finally:
        stop(successor)


def test_the_worker_killed_fails_the_workers_check_and_an_unconsumed_queue_fails_consumers(
    broker: Broker,
) -> None:
    environment = {"TASKKIT_TEST_WORKER_LOST_AFTER": str(LOST_AFTER)}
    previous = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)  # start_worker passes this process's environment on
    try:
        worker = start_worker(broker, "health", queues=("default",), pool="prefork")
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value
    try:
        detail = until("workers", True)
        assert detail.startswith("1 alive: health-redis-")
        taskkit.enqueue("echo:payload", {"waits": True}, queue="orphan")
        detail = until("consumers", False)
        assert detail == "no live worker consumes orphan (1)"
        kill(worker)
        detail = until("workers", False)
        assert detail.startswith("no live worker: none seen within 2 s; health-redis-")
    finally:
        stop(worker)
