"""taskkit.testing: capture enqueues, assert on them, run them inline."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

import taskkit
from taskkit.models import TaskRun
from taskkit.testing import Captured, capture_enqueues

pytestmark = pytest.mark.django_db


def test_captured_enqueues_are_neither_stored_nor_sent(taskkit_enqueues: Captured) -> None:
    first = taskkit.enqueue("echo:payload", {"a": 1})
    taskkit.enqueue_in("track:outbox", 60, {"b": 2})
    later = timezone.now() + timedelta(hours=1)
    taskkit.get_task("db:migrate").enqueue_at(later, queue="q2")
    taskkit.enqueue_many("echo:payload", [{"c": 3}, {"c": 4}])
    assert TaskRun.objects.count() == 0
    [run] = taskkit_enqueues.assert_enqueued("echo:payload", {"a": 1})
    assert run.id == first.id and run.queue == "default" and run.run_after is None
    assert taskkit_enqueues.assert_enqueued("db:migrate", queue="q2")[0].run_after == later
    taskkit_enqueues.assert_enqueued("echo:payload", count=3)
    taskkit_enqueues.assert_not_enqueued("echo:fail")


def test_assertion_messages() -> None:
    with capture_enqueues() as captured:
        taskkit.enqueue("echo:payload", {"a": 1})
    with pytest.raises(AssertionError, match=r"'echo:payload' with payload \{'a': 2\} was not"):
        captured.assert_enqueued("echo:payload", {"a": 2})
    with pytest.raises(AssertionError, match="enqueued 1 times, not 2"):
        captured.assert_enqueued("echo:payload", count=2)
    with pytest.raises(AssertionError, match="'echo:payload' was enqueued 1 times"):
        captured.assert_not_enqueued("echo:payload")
    captured.clear()
    with pytest.raises(AssertionError, match="enqueued: nothing"):
        captured.assert_enqueued("echo:payload")


def test_bad_payloads_still_fail(taskkit_enqueues: Captured) -> None:
    with pytest.raises(taskkit.InvalidPayload):
        taskkit.enqueue("echo:payload", {"x": object()})
    assert taskkit_enqueues.runs == []


def test_run_all_runs_captured_runs_inline_in_order(taskkit_enqueues: Captured) -> None:
    taskkit.enqueue("echo:payload", {"n": 1})
    taskkit.enqueue_in("aio:sleep", 30, {"n": 2})
    assert taskkit_enqueues.run_all() == [{"n": 1}, {"async": True, "payload": {"n": 2}}]
    assert taskkit_enqueues.runs == []


def test_run_all_stops_at_a_failure(taskkit_enqueues: Captured) -> None:
    taskkit.enqueue("echo:fail")
    taskkit.enqueue("echo:payload")
    with pytest.raises(RuntimeError):
        taskkit_enqueues.run_all()
    assert [r.name for r in taskkit_enqueues.runs] == ["echo:fail", "echo:payload"]


def test_outside_capture_enqueues_really_happen() -> None:
    with capture_enqueues():
        pass
    from taskkit.bridge.send.capture import active

    assert active() is None
