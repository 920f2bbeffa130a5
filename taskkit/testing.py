"""Helpers for testing code that queues tasks.

``capture_enqueues()`` records every enqueue instead of storing or sending it,
so a test can assert what a view queued and then run it inline::

    from taskkit.testing import capture_enqueues

    def test_signup_sends_welcome(client):
        with capture_enqueues() as captured:
            client.post("/signup/", {"email": "ada@example.com"})
            captured.assert_enqueued("emails:welcome", payload={"email": "ada@example.com"})
            captured.run_all()  # inside the block, so what those runs queue is captured too

Payloads are checked as in production. Runs are captured when ``enqueue`` is
called, not after commit. With pytest, ``pytest_plugins = ["taskkit.testing"]``
gives the ``taskkit_enqueues`` fixture. Import this module once Django is set up
(pytest-django does that before it loads plugins).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .bridge.send.capture import Capture, CapturedRun, capturing
from .definition import Source
from .registry import get_task
from .runner import execute

__all__ = ["Captured", "CapturedRun", "capture_enqueues"]

_ANY: Any = object()


class Captured(Capture):
    """The runs queued while capturing, with assertions and a way to run them."""

    def named(self, name: str) -> list[CapturedRun]:
        """The captured runs of task ``name``."""
        return [run for run in self.runs if run.name == name]

    def assert_enqueued(
        self, name: str, payload: Any = _ANY, *, count: int | None = None, queue: str | None = None
    ) -> list[CapturedRun]:
        """Assert that ``name`` was queued (with ``payload``, ``count`` times, on ``queue``)."""
        matches = [
            run
            for run in self.named(name)
            if (payload is _ANY or run.payload == payload) and (queue is None or run.queue == queue)
        ]
        wanted = f"{name!r}" + ("" if payload is _ANY else f" with payload {payload!r}")
        if not matches:
            seen = [(run.name, run.payload) for run in self.runs] or "nothing"
            raise AssertionError(f"{wanted} was not enqueued; enqueued: {seen}")
        if count is not None and len(matches) != count:
            raise AssertionError(f"{wanted} was enqueued {len(matches)} times, not {count}")
        return matches

    def assert_not_enqueued(self, name: str) -> None:
        """Assert that nothing queued a run of ``name``."""
        if runs := self.named(name):
            raise AssertionError(f"{name!r} was enqueued {len(runs)} times")

    def run_all(self) -> list[Any]:
        """Run every captured run inline, oldest first, and what those runs queue; return results.

        A run that raises stops here and its error propagates; it and the runs
        after it stay captured.
        """
        results = []
        while self.runs:
            run = self.runs[0]
            context = {"run_id": run.id, "queue": run.queue, "source": Source.WORKER}
            results.append(execute(get_task(run.name), run.payload, context=context))
            self.runs.pop(0)
        return results

    def clear(self) -> None:
        """Forget every captured run."""
        self.runs.clear()


@contextmanager
def capture_enqueues() -> Iterator[Captured]:
    """Record enqueues instead of sending them, for the duration of the block."""
    with capturing(Captured()) as captured:
        yield captured


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    pass
else:

    @pytest.fixture
    def taskkit_enqueues() -> Iterator[Captured]:
        """Capture every enqueue of the test (see :func:`capture_enqueues`)."""
        with capture_enqueues() as captured:
            yield captured
