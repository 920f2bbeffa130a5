"""``django.tasks`` functions, run by taskkit's ``CeleryBackend`` in the backend tests."""

from __future__ import annotations

from typing import Any

from taskkit.backends.compat import TaskContext, task


@task
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@task
def fail(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True)
def where(context: TaskContext[Any, Any], label: str) -> dict[str, Any]:
    return {"id": context.task_result.id, "attempt": context.attempt, "label": label}


@task
async def double(n: int) -> int:
    return n * 2
