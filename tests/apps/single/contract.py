"""The functions of Django's ``tests/tasks/tasks.py`` that the contract suite runs on a worker.

Written anew for ``tests/integration/test_django_contract.py``; the names are
Django's, so each test maps onto its upstream one.
"""

from __future__ import annotations

import builtins
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskkit.backends.compat import (
    TaskContext,
    TaskResult,
    task,
    task_enqueued,
    task_finished,
    task_started,
)


@task
def noop_task(*args: Any, **kwargs: Any) -> None:
    return None


@task()
async def noop_task_async(*args: Any, **kwargs: Any) -> None:
    return None


@task
def calculate_meaning_of_life() -> int:
    return 42


@task
def failing_task_value_error() -> None:
    raise ValueError("This task failed due to ValueError")


@task
def failing_task_system_exit() -> None:
    raise SystemExit("This task failed due to SystemExit")


@task
def failing_task_keyboard_interrupt() -> None:
    raise KeyboardInterrupt("This task failed due to KeyboardInterrupt")


@task
def complex_exception() -> None:
    raise ValueError(ValueError("This task failed"))


@task
def complex_return_value() -> Any:
    return lambda: True  # neither JSON nor picklable


@task
def exit_task() -> None:
    exit(1)


@task(takes_context=True)
def get_task_id(context: TaskContext[Any, Any]) -> str:
    return context.task_result.id


@task(takes_context=True)
def context_attempt(context: TaskContext[Any, Any], attempt: int) -> None:
    """Django's ``test_context``, renamed so pytest does not take it for a test."""
    assert isinstance(context, TaskContext)
    assert context.attempt == attempt


@task
def process_id() -> int:
    """The pool process that ran it: the same one before and after a task that exits."""
    return os.getpid()


@task(backend="dummy")
def declared_on_dummy(a: int, b: int) -> int:
    """Declared on another backend; ``.using(backend="default")`` runs it on Celery."""
    return a * b


@task
def signalled(token: str, raising: str = "") -> str:
    """Its runs' signals are written down (see :func:`_write_down`); ``raising`` names a
    built-in exception to raise."""
    if raising:
        raise getattr(builtins, raising)(token)
    return token


def signal_file(token: str) -> Path:
    """Where the signals of the run of :func:`signalled` with ``token`` are written down."""
    return Path(tempfile.gettempdir()) / f"taskkit-contract-{token}.jsonl"


def _write_down(name: str) -> Callable[..., None]:
    def receiver(sender: type, task_result: TaskResult[Any, Any], **kwargs: Any) -> None:
        token = task_result.args[0] if task_result.args else None
        if task_result.task.func is not signalled.func or not isinstance(token, str):
            return
        if not token.isalnum():  # a uuid's hex: the file name stays in the temp folder
            return
        line = {
            "signal": name,
            "sender": f"{sender.__module__}.{sender.__qualname__}",
            "id": task_result.id,
            "status": str(task_result.status),
            "errors": [e.exception_class_path for e in task_result.errors],
            # resolved where the signal is sent: the path must import
            "classes": [e.exception_class.__name__ for e in task_result.errors],
            "traceback": [e.traceback for e in task_result.errors],
        }
        with signal_file(token).open("a") as out:
            out.write(json.dumps(line) + "\n")

    return receiver


for _name, _signal in (
    ("task_enqueued", task_enqueued),
    ("task_started", task_started),
    ("task_finished", task_finished),
):
    _signal.connect(_write_down(_name), weak=False, dispatch_uid=f"contract-{_name}")
