"""Only a worker started from the command line is ended after its shutdown.

An in-process worker (Celery's test worker, a test suite's) sends ``worker_shutdown``
too; the process it runs in is not the worker's to end.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from taskkit.bridge.work import exit_deadline


def test_an_in_process_worker_arms_no_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    ended: list[tuple[Any, ...]] = []
    monkeypatch.setattr(exit_deadline, "_end_in", lambda *args: ended.append(args))
    before = set(threading.enumerate())
    exit_deadline._arm(sender=SimpleNamespace(exitcode=0))
    started = set(threading.enumerate()) - before
    assert [thread.name for thread in started] == []
    assert ended == []


def test_a_command_line_worker_arms_it_with_its_exit_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery.apps.worker import Worker

    ended: list[tuple[Any, ...]] = []
    monkeypatch.setattr(exit_deadline, "_end_in", lambda *args: ended.append(args))
    worker = Worker.__new__(Worker)  # its class is what counts; nothing of it is started
    worker.exitcode = 3
    exit_deadline._arm(sender=worker)
    for thread in threading.enumerate():
        if thread.name == "taskkit-exit-deadline":
            thread.join(5)
    assert ended == [(exit_deadline.DEADLINE, 3)]
