"""Capture mode for tests: enqueues are recorded instead of stored or sent.

Payloads are still checked, so a test catches a bad payload; locks and the
broker are left alone. :mod:`taskkit.testing` is the public face of this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from .handle import RunHandle
from .messages import Prepared


@dataclass(frozen=True, slots=True)
class CapturedRun:
    """One run a captured enqueue asked for."""

    id: str
    name: str
    payload: dict[str, Any]
    queue: str
    run_after: datetime | None = None


@dataclass
class Capture:
    """The runs recorded while capturing, oldest first."""

    runs: list[CapturedRun] = field(default_factory=list)

    def record(self, runs: list[Prepared], run_after: datetime | None = None) -> list[RunHandle]:
        for run in runs:
            self.runs.append(
                CapturedRun(run.run_id, run.task.name, run.payload, run.queue, run_after)
            )
        return [RunHandle(id=run.run_id, name=run.task.name, queue=run.queue) for run in runs]


_stack: list[Capture] = []


def active() -> Capture | None:
    """The innermost capture in force, if any."""
    return _stack[-1] if _stack else None


CaptureT = TypeVar("CaptureT", bound=Capture)


@contextmanager
def capturing(capture: CaptureT) -> Iterator[CaptureT]:
    _stack.append(capture)
    try:
        yield capture
    finally:
        _stack.remove(capture)
