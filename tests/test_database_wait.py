"""A run waits for an unreachable database instead of being dropped before it starts."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, NoReturn, cast

import pytest
from django.db import OperationalError

from taskkit.bridge.work import delivery as worker


def test_a_step_is_tried_again_while_the_database_is_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("taskkit.bridge.work.delivery.time.sleep", lambda seconds: None)
    failures = [OperationalError("connection reset"), OperationalError("connection refused")]

    def step() -> str:
        if failures:
            raise failures.pop(0)
        return "written"

    assert worker.with_database(step) == "written"
    assert not failures


class HandedBack(Exception):
    pass


def test_before_the_handler_it_hands_the_message_back_after_database_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "DATABASE_WAIT", 0.0)

    def step() -> None:
        raise OperationalError("still away")

    def hand_back(exc: Exception) -> NoReturn:
        raise HandedBack(str(exc))

    with pytest.raises(HandedBack, match="still away"):
        worker.with_database(step, hand_back)


def test_after_the_handler_it_goes_on_trying_past_database_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run's outcome must be written: no hand-back (that would run it twice), no giving up."""
    monkeypatch.setattr(worker, "DATABASE_WAIT", 0.0)
    monkeypatch.setattr("taskkit.bridge.work.delivery.time.sleep", lambda seconds: None)
    failures = [OperationalError("away")] * 50

    def step() -> str:
        if failures:
            raise failures.pop()
        return "recorded"

    assert worker.with_database(step) == "recorded"


def test_hand_back_sends_the_same_message_again_through_celerys_retry() -> None:
    asked: dict[str, Any] = {}

    class Task:
        name = "echo:payload"
        request = SimpleNamespace(id="r1", args=(), kwargs={"payload": {}, "context": {"a": 1}})

        def retry(self, **options: Any) -> Exception:
            asked.update(options)
            return HandedBack()

    exc = OperationalError("away")
    with pytest.raises(HandedBack):
        worker.hand_back(cast(Any, Task()), exc)
    assert asked == {
        "args": (),
        "kwargs": {"payload": {}, "context": {"a": 1}},
        "exc": exc,
        "countdown": worker.HAND_BACK_AFTER,
    }
    with pytest.raises(HandedBack):  # the context carries this delivery's claim
        worker.hand_back(cast(Any, Task()), exc, claim="2030-01-01T00:00:00+00:00")
    assert asked["kwargs"]["context"] == {"a": 1, "claim": "2030-01-01T00:00:00+00:00"}
    Task.request.args, Task.request.kwargs = ({}, {"a": 1}), {}  # positional, as Celery may send
    with pytest.raises(HandedBack):
        worker.hand_back(cast(Any, Task()), exc, claim="c")
    assert asked["args"] == ({}, {"a": 1, "claim": "c"})


def test_celery_retries_a_handed_back_message_without_limit() -> None:
    from celery import current_app

    assert current_app.tasks["echo:payload"].max_retries is None
