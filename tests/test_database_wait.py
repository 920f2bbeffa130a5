"""A run waits for an unreachable database instead of being dropped before it starts."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from taskkit.bridge.work import run as worker


def test_a_step_is_tried_again_while_the_database_is_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("taskkit.bridge.work.run.time.sleep", lambda seconds: None)
    failures = [OperationalError("connection reset"), OperationalError("connection refused")]

    def step() -> str:
        if failures:
            raise failures.pop(0)
        return "written"

    assert worker.with_database(step) == "written"
    assert not failures


def test_it_gives_up_after_database_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "DATABASE_WAIT", 0.0)

    def step() -> None:
        raise OperationalError("still away")

    with pytest.raises(OperationalError, match="still away"):
        worker.with_database(step)
