"""The runner layer: inline execution of registered tasks, by name or by value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..definition import TaskContext
from ..registry import get_task
from .execute import aexecute, build_context, call, execute, flights
from .singleflight import SingleFlight


def run_task(
    name: str,
    payload: Mapping[str, Any] | None = None,
    context: TaskContext | Mapping[str, Any] | None = None,
) -> Any:
    """Run the task called ``name`` in this process and return its result.

    Raises :class:`~taskkit.TaskNotFound`, :class:`~taskkit.TaskNotImplemented`,
    :class:`~taskkit.InvalidPayload`, or whatever the task itself raises.
    """
    return execute(get_task(name), payload, context=context)


async def arun_task(
    name: str,
    payload: Mapping[str, Any] | None = None,
    context: TaskContext | Mapping[str, Any] | None = None,
) -> Any:
    """Async twin of :func:`run_task`."""
    return await aexecute(get_task(name), payload, context=context)


__all__ = [
    "SingleFlight",
    "aexecute",
    "arun_task",
    "build_context",
    "call",
    "execute",
    "flights",
    "run_task",
]
