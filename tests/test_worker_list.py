"""The worker list: ``taskkit.queues.worker_list`` and ``taskqueue workers``, from heartbeats."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from taskkit import queues
from taskkit.bridge.work import heartbeat
from taskkit.bridge.work.about import About
from taskkit.models import LOST_KEPT, KnownQueue, WorkerHeartbeat

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("lost_after_60"),
]
ABOUT = About(["default", "mail"], 4, "prefork", "5.7.0", "1.0")


@pytest.fixture
def lost_after_60() -> Any:
    with override_settings(TASKKIT={"WORKER_LOST_AFTER": 60}):
        yield


def row(name: str, seen_ago: float, **fields: Any) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name=name,
        started_at=now - timedelta(hours=2),
        seen_at=now - timedelta(seconds=seen_ago),
        **fields,
    )


def taskqueue(*args: str) -> str:
    out = StringIO()
    call_command("taskqueue", "workers", *args, stdout=out)
    return out.getvalue()


def test_live_workers_by_name_then_the_others_last_seen_first() -> None:
    assert heartbeat.beat("b@box", timezone.now(), "box:12:aa", ABOUT, (3, 1))
    row("a@box", seen_ago=5, process="box:11:bb")
    row("silent@box", seen_ago=90)  # not swept yet
    row("lost@box", seen_ago=600, lost_at=timezone.now() - timedelta(minutes=9))
    row("long-lost@box", seen_ago=3 * 86400, lost_at=timezone.now() - LOST_KEPT * 2)
    found = queues.worker_list()
    assert [(w.name, w.alive, w.lost_at is not None) for w in found] == [
        ("a@box", True, False),
        ("b@box", True, False),
        ("silent@box", False, False),
        ("lost@box", False, True),
    ]
    b = found[1]
    assert (b.host, b.pid, b.queues, b.concurrency, b.pool, b.active, b.reserved) == (
        "box",
        12,
        ["default", "mail"],
        4,
        "prefork",
        3,
        1,
    )


def test_a_row_marked_lost_but_fresh_is_not_alive() -> None:
    """The sweep's mark wins over a clock running ahead."""
    row("odd@box", seen_ago=0, lost_at=timezone.now())
    assert [w.alive for w in queues.worker_list()] == [False]


def test_the_command_prints_the_list() -> None:
    assert heartbeat.beat("b@box", timezone.now(), "box:12:aa", ABOUT, (3, 1))
    row("lost@box", seen_ago=600, lost_at=timezone.now(), process="gone:7:cd")
    header, alive, lost = taskqueue().splitlines()
    assert header.split() == [
        "WORKER", "HOST", "PID", "QUEUES", "POOL", "ACTIVE", "RESERVED", "SEEN", "AT", "STATE"
    ]  # fmt: skip
    assert alive.split()[:8] == ["b@box", "box", "12", "default,mail", "prefork", "4", "3", "1"]
    assert alive.split()[-1] == "alive"
    assert lost.split()[:4] == ["lost@box", "gone", "7", "-"]
    assert "? ?" in lost and lost.split()[-2] == "lost"


def test_the_command_prints_json() -> None:
    assert heartbeat.beat("b@box", timezone.now(), "box:12:aa", ABOUT, (3, 1))
    [found] = json.loads(taskqueue("--json"))
    assert {key: found[key] for key in ("name", "host", "pid", "queues", "alive", "lost_at")} == {
        "name": "b@box",
        "host": "box",
        "pid": 12,
        "queues": ["default", "mail"],
        "alive": True,
        "lost_at": None,
    }
    assert (found["concurrency"], found["pool"], found["active"], found["reserved"]) == (
        4,
        "prefork",
        3,
        1,
    )
    assert set(found) >= {"started_at", "seen_at"}


def test_no_worker() -> None:
    assert taskqueue() == "No worker has written a heartbeat in the last day.\n"
    assert json.loads(taskqueue("--json")) == []


def test_live_asks_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    answered = [queues.LiveWorker("w@box", [], 2)]
    waited: list[float] = []

    def live_workers(timeout: float) -> list[queues.LiveWorker]:
        waited.append(timeout)
        return answered

    monkeypatch.setattr(queues, "live_workers", live_workers)
    assert json.loads(taskqueue("--live", "--timeout", "2", "--json")) == [
        {"name": "w@box", "active": [], "reserved": 2}
    ]
    assert waited == [2.0]
    with pytest.raises(CommandError, match="more than 0"):
        taskqueue("--live", "--timeout", "0")


def test_runs_taken_but_not_started_are_counted_per_queue(tmp_path: Any) -> None:
    from tests.integration.conftest import current, make_app, transport_settings

    assert heartbeat.beat("a@box", timezone.now(), "box:1:a", ABOUT, (1, 5), {"mail": 5})
    row("b@box", seen_ago=5, reserved=2, reserved_queues={"mail": 1, "default": 1})
    row("gone@box", seen_ago=600, reserved=9, reserved_queues={"mail": 9})  # not alive
    assert queues.reserved_by_queue() == {"mail": 6, "default": 1}
    KnownQueue.objects.bulk_create([KnownQueue(name="mail"), KnownQueue(name="default")])
    app = make_app("reserved", "filesystem://", **transport_settings("filesystem", tmp_path))
    with current(app):
        WorkerHeartbeat.objects.filter(name="a@box").update(seen_at=timezone.now())
        found = {q.name: q for q in queues.details().queues}
        assert (found["mail"].length, found["mail"].reserved) == (0, 6)
        assert found["default"].reserved == 1
        assert queues.info("mail").reserved == 6
        out = StringIO()
        call_command("taskqueue", "details", stdout=out)
        assert "TAKEN, NOT STARTED" in out.getvalue()
        call_command("taskqueue", "details", "--json", stdout=(out := StringIO()))
        shown = {q["name"]: q["reserved"] for q in json.loads(out.getvalue())["queues"]}
    assert shown["mail"] == 6


def test_a_worker_counts_what_it_holds_unstarted_per_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    import weakref

    from celery.worker import state

    from taskkit.bridge.work import about

    class Request:  # weakly referenced, as Celery's requests
        def __init__(self, queue: str | None) -> None:
            self.delivery_info = {"routing_key": queue} if queue else None

    working = [Request("mail")]
    waiting = [Request("mail"), Request("mail"), Request("default"), Request(None)]
    monkeypatch.setattr(state, "active_requests", weakref.WeakSet(working))
    monkeypatch.setattr(state, "reserved_requests", weakref.WeakSet(working + waiting))
    assert about.waiting() == {"mail": 2, "default": 1, "?": 1}
