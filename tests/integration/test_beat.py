"""Two Beats on one database: every periodic tick is sent exactly once, across a leader's death.

This runs apart from the other integration tests: its own database (a SQLite
file, or a PostgreSQL database when the suite runs on PostgreSQL), its own
Redis database, one worker and two ``celery beat`` processes with taskkit's
scheduler, and the periodic tasks switched on by ``TASKKIT_TEST_PERIODIC``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
import redis

REPO = Path(__file__).resolve().parents[2]
#: Beat's own broker, apart from the other tests' (``TASKKIT_TEST_BEAT_REDIS_URL``).
BROKER = os.environ.get("TASKKIT_TEST_BEAT_REDIS_URL", "redis://127.0.0.1:6379/13")


POSTGRES = os.environ.get("TASKKIT_TEST_DATABASE") == "postgres"


def postgres(database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host="127.0.0.1", user="postgres", dbname=database, autocommit=True)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TASKKIT_TEST_SQLITE": str(tmp_path / "beat.sqlite3"),
        "TASKKIT_TEST_PG_NAME": f"taskkit_beat_{uuid.uuid4().hex[:12]}",
        "TASKKIT_TEST_BROKER": BROKER,
        "TASKKIT_TEST_PERIODIC": "1",
        "PYTHONPATH": str(REPO),
    }
    if POSTGRES:
        with postgres() as server:
            server.execute(f'CREATE DATABASE "{env["TASKKIT_TEST_PG_NAME"]}"')
    migrate = [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, cwd=REPO, env=env, check=True, timeout=120)
    # Not a purge: a worker killed in an earlier run leaves its prefetched messages in
    # kombu's unacked hash, which Redis gives back an hour later, into this test's ticks.
    with closing(redis.Redis.from_url(BROKER)) as broker:
        broker.flushdb()
    yield env
    if POSTGRES:
        with postgres() as server:
            server.execute(f'DROP DATABASE "{env["TASKKIT_TEST_PG_NAME"]}" WITH (FORCE)')


def celery(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery_app", *args, "-l", "warning"],
        cwd=REPO, env=env, text=True,
    )  # fmt: skip


def query(env: dict[str, str], sql: str) -> list[tuple[object, ...]]:
    if POSTGRES:
        with postgres(env["TASKKIT_TEST_PG_NAME"]) as db:
            return db.execute(sql.encode()).fetchall()
    with closing(sqlite3.connect(env["TASKKIT_TEST_SQLITE"], timeout=20)) as db:
        return db.execute(sql).fetchall()


def leader_pid(env: dict[str, str]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = query(env, "SELECT holder FROM taskkit_schedulerlease WHERE name = 'beat'")
        if rows:
            return int(str(rows[0][0]).split(":")[1])
        time.sleep(0.2)
    raise AssertionError("no scheduler took the lease")


def json_value(stored: object) -> dict[str, str]:
    """A JSON column as read: a string from SQLite, already decoded from PostgreSQL."""
    return stored if isinstance(stored, dict) else json.loads(str(stored))


def ticks(env: dict[str, str], name: str) -> list[tuple[datetime, str]]:
    rows = query(env, f"SELECT payload, status FROM taskkit_taskrun WHERE name = '{name}'")
    return sorted((datetime.fromisoformat(json_value(p)["scheduledTime"]), str(s)) for p, s in rows)


def stopped(process: subprocess.Popen[str], timeout: float) -> bool:
    """Whether ``process`` ended within ``timeout``; killed if not, so no process outlives
    the test (its warning would fail whichever later test the garbage collector meets)."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    return True


def test_two_beats_send_each_tick_once_and_hand_over(database: dict[str, str]) -> None:
    env = database
    worker = celery(
        env,
        "worker",
        "-Q",
        "default",
        "-P",
        "threads",
        "-c",
        "4",
        "--without-mingle",
        "--without-gossip",
    )
    beats = {}
    for _ in range(2):
        process = celery(
            env, "beat", "--scheduler", "taskkit.scheduler:Scheduler", "-s", os.devnull
        )
        beats[process.pid] = process
    start = time.time()
    try:
        leader_pid(env)
        # the first minute after a Beat leads: Beat's first start does not send the one before
        next_minute = (int(time.time()) // 60 + 1) * 60
        time.sleep(max(start + 10 - time.time(), 0))
        leader = leader_pid(env)
        assert leader in beats
        beats[leader].send_signal(signal.SIGKILL)
        beats[leader].wait(10)
        killed = time.time()
        time.sleep(max(killed + 12, next_minute + 4) - time.time())
        assert leader_pid(env) != leader  # the other one took over
    finally:
        for process in beats.values():
            process.terminate()
        deaf = [pid for pid, process in beats.items() if not stopped(process, 20)]
        time.sleep(3)  # let the worker finish what is queued
        worker.terminate()
        stopped(worker, 30)
    assert not deaf, f"Beat {deaf} did not stop on SIGTERM"

    seconds = ticks(env, "periodic:second")
    times = [t for t, _ in seconds]
    assert len(times) == len(set(times)) >= 15  # no tick sent twice
    gaps = {(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)}
    missing = [b for a, b in itertools.pairwise(times) if (b - a).total_seconds() != 1]
    assert gaps == {1.0}, (
        f"missed ticks before {missing}; leader killed at {datetime.fromtimestamp(killed)}, ticks from {times[0]}"
    )
    assert {status for _, status in seconds} == {"succeeded"}

    # The cron schedule fires every minute. Owed: each minute a Beat led through
    # (a first start does not send the minute before it led), the minute inside
    # the hand-over's gap included; the last two seconds may go either way.
    led_from, led_until = times[0].timestamp(), times[-1].timestamp()
    owed = [
        m for m in range(next_minute - 60, int(led_until) + 60, 60) if led_from < m <= led_until - 2
    ]
    assert next_minute in owed
    minutes = ticks(env, "echo:payload")
    sent = [t.timestamp() for t, _ in minutes]
    assert len(sent) == len(set(sent)), f"a cron tick sent twice: {minutes}"
    assert all(m % 60 == 0 and led_from < m <= led_until + 1 for m in sent), minutes
    assert set(owed) <= set(sent), (
        f"cron ticks {owed} owed, {minutes} sent; Beats led from {times[0]} to {times[-1]}, "
        f"leader killed at {datetime.fromtimestamp(killed)}"
    )
    assert {status for _, status in minutes} <= {"succeeded"}
