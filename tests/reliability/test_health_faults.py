"""The health checks fail for real, each with its dependency stopped, on the tests' own servers.

``manage.py taskqueue health --json`` as a probe runs it: exit 0 while the
private ``redis-server`` broker is up, exit 1 naming ``broker`` once it is
killed; exit 1 naming ``database`` while the proxy to a private PostgreSQL
database refuses and resets connections, and 0 again once it forwards them. A
real Beat killed outright fails ``scheduler`` once its lease runs out, and the
Beat that leads next counts as the lease's first change; a real
worker killed outright fails ``workers`` once its heartbeat is too old, and
while it lives, a queue it does not consume but that holds a message fails
``consumers``. A Redis filled to its ``maxmemory`` fails ``broker_memory``
(and refuses the next enqueue), as does one whose policy evicts keys; the
liveness probe passes meanwhile. Every probe runs with a deadline: a check that hung would fail
the test, not stall it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

import taskkit
from taskkit import queues
from taskkit.bridge.work import heartbeat
from taskkit.queues.health import LIVENESS
from taskkit.scheduling import lease
from tests.integration.conftest import REPO, Broker, start_worker, stop

from .conftest import PrivateRedis, on_broker, start_beat
from .postgres import on_postgres
from .processes import MANAGE, environment, kill_group
from .proxy import Proxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
#: The most a probe may take before the test calls it hung (a probe's own timeout is shorter).
PROBE_DEADLINE = 60
TIMEOUT = 30
LOST_AFTER = 2.0


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


@pytest.fixture
def broker(private_redis: PrivateRedis) -> Iterator[Broker]:
    """The private broker made current, and this process's ``WORKER_LOST_AFTER`` the workers'."""
    lost_after = override_settings(TASKKIT={**settings.TASKKIT, "WORKER_LOST_AFTER": LOST_AFTER})
    with on_broker("reliability-health", private_redis.url) as broker, lost_after:
        yield broker


def test_the_broker_killed_fails_its_check_and_the_probe_exits_1(
    broker: Broker, private_redis: PrivateRedis
) -> None:
    assert lease.hold(lease.BEAT, "beat-host:1:cafe", timedelta(minutes=5))
    assert heartbeat.beat("alive@host", timezone.now(), "h:1:a")
    env = environment(private_redis.url)
    code, found = probe(env)
    assert code == 0, found
    assert found["broker"][1].startswith("redis answered in "), found

    private_redis.kill()
    code, found = probe(env)
    assert code == 1
    failed = [name for name, (ok, _) in found.items() if not ok]
    assert failed == ["broker", "broker_memory", "consumers"]
    assert "unreachable" in found["broker"][1], found["broker"]
    assert str(private_redis.port) in found["broker"][1]
    code, live = probe(env, "database", "broker")  # a liveness probe fails with it
    assert code == 1 and not live["broker"][0] and live["database"][0]


def test_a_full_redis_fails_broker_memory_but_not_liveness(
    broker: Broker, private_redis: PrivateRedis
) -> None:
    env = environment(private_redis.url)
    client = redis.Redis.from_url(private_redis.url)
    try:
        code, found = probe(env, "broker_memory")
        assert code == 0 and found["broker_memory"][1].endswith(", with no limit"), found
        taskkit.enqueue_many("echo:payload", [{"n": n} for n in range(500)])
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", used)
        with pytest.raises(taskkit.BrokerUnavailable, match="maxmemory"):
            taskkit.enqueue("echo:payload", {"n": "one more"})
        code, found = probe(env, "database", "broker", "broker_memory")
        assert code == 1, found
        ok, detail = found["broker_memory"]
        assert not ok and detail.endswith(": at the limit it takes no new message"), detail
        assert found["broker"][0] and found["database"][0]
        assert probe(env, *LIVENESS)[0] == 0  # a full broker is no reason to restart
        client.config_set("maxmemory", used * 100)
        client.config_set("maxmemory-policy", "allkeys-lru")
        code, found = probe(env, "broker_memory")
        assert code == 1 and "maxmemory-policy allkeys-lru evicts keys" in found["broker_memory"][1]
    finally:
        client.config_set("maxmemory", 0)
        client.close()


# The database, behind a proxy


def test_the_database_cut_fails_its_check_and_the_probe_exits_1(
    database: str, private_redis: PrivateRedis
) -> None:
    proxy = Proxy("127.0.0.1", 5432)
    try:
        env = environment(private_redis.url, **on_postgres(database, proxy.port))
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


def test_the_leader_killed_fails_the_scheduler_check_and_the_next_one_is_a_change(
    broker: Broker,
) -> None:
    assert not queues.health(["scheduler"]).ok  # nobody leads yet
    beat = start_beat(broker.url)
    try:
        detail = until("scheduler", True)
        assert " leads; its lease runs " in detail
        assert lease.changes(lease.BEAT) == 0  # the first leader is no change
        kill_group(beat)
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
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:  # start_worker passes this process's environment on
        patched.setenv("TASKKIT_TEST_WORKER_LOST_AFTER", str(LOST_AFTER))
        worker = start_worker(broker, "health", queues=("default",), pool="prefork")
    try:
        detail = until("workers", True)
        assert detail.startswith("1 alive: health-redis-")
        taskkit.enqueue("echo:payload", {"waits": True}, queue="orphan")
        detail = until("consumers", False)
        assert detail == "no live worker consumes orphan (1)"
        kill_group(worker)
        detail = until("workers", False)
        assert detail.startswith("no live worker: none seen within 2 s; health-redis-")
    finally:
        stop(worker)
