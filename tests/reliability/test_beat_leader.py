"""The leader Beat SIGKILLed while it promotes 1,000 delayed runs due at the same instant.

Two ``celery beat`` processes with taskkit's scheduler share the test database;
one worker runs on a private Redis. The leader is killed as soon as the first
due rows leave ``scheduled`` (it is promoting them: it claims and sends at most
500 rows a tick); the other Beat takes the lease once it expires and promotes
the rest. Every run counts itself
(``echo:count``): none may be lost, none may run twice, and every row ends
``succeeded``.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery import Celery
from django.db import transaction
from django.utils import timezone

import taskkit
from taskkit.models import RunStatus, SchedulerLease, TaskRun
from tests.integration.conftest import start_worker, stop

from .conftest import PrivateRedis, counted, forget, on_broker, start_beat

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
RUNS = 1_000
TIMEOUT = 45


@pytest.fixture
def app(private_redis: PrivateRedis) -> Iterator[Celery]:
    """One worker (threads) on the private Redis, and its app made current."""
    with on_broker("reliability-beat", private_redis.url) as broker:
        worker = start_worker(broker, "beatkill")
        try:
            yield broker.app
        finally:
            stop(worker)


def leader_pid() -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        holder = SchedulerLease.objects.filter(name="beat").values_list("holder", flat=True).first()
        if holder:  # a released lease keeps its row, with no holder
            return int(holder.split(":")[1])
        time.sleep(0.1)
    raise AssertionError("no scheduler took the lease")


def test_killing_the_leader_while_it_promotes_loses_and_repeats_nothing(
    app: Celery, private_redis: PrivateRedis
) -> None:
    key = f"beatkill:{uuid.uuid4()}"
    beats = {beat.pid: beat for beat in (start_beat(private_redis.url) for _ in range(2))}
    try:
        leader = leader_pid()
        assert leader in beats
        due = timezone.now() + timedelta(seconds=4)
        with transaction.atomic():
            sent = [
                taskkit.enqueue_at("echo:count", due, {"key": key, "i": i}).id for i in range(RUNS)
            ]
        assert timezone.now() < due - timedelta(seconds=1), "enqueueing took too long"
        # kill the leader the moment its promotion shows: the first rows claimed
        deadline = time.monotonic() + (due - timezone.now()).total_seconds() + 5
        waiting = TaskRun.objects.filter(pk__in=sent).exclude(status=RunStatus.SCHEDULED)
        while not waiting.exists() and time.monotonic() < deadline:
            time.sleep(0.002)
        beats[leader].send_signal(signal.SIGKILL)
        beats[leader].wait(10)
        left = TaskRun.objects.filter(pk__in=sent, status=RunStatus.SCHEDULED).count()
        assert leader_pid() != leader or _handed_over(leader)
        ran = counted(key, RUNS, TIMEOUT)
        deadline = time.monotonic() + 10
        succeeded = 0
        while succeeded < RUNS and time.monotonic() < deadline:
            succeeded = TaskRun.objects.filter(pk__in=sent, status=RunStatus.SUCCEEDED).count()
            time.sleep(0.1)
    finally:
        for beat in beats.values():
            stop(beat)
        forget(key)
    lost = set(sent) - set(ran)
    print(
        f"enqueued {len(sent)}, still scheduled when the leader died {left}, "
        f"ran {len(set(ran))}, lost {len(lost)}, duplicated {len(ran) - len(set(ran))}, "
        f"succeeded rows {succeeded}"
    )
    assert left > 0, "the leader promoted everything before it died: the test proves nothing"
    assert not lost, f"{len(lost)} delayed runs never ran"
    assert len(ran) == len(set(ran)), "a run ran twice"
    assert succeeded == RUNS


def _handed_over(leader: int) -> bool:
    """Wait for the lease to pass from the dead ``leader`` to the other Beat."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if leader_pid() != leader:
            return True
        time.sleep(0.2)
    return False
