"""Run one task in this process: build the event, call the handler, check the result.

Sync and async handlers both work from sync and async callers. Success and
failure hooks run here too, so a task behaves the same inline and on a worker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async

from ..conf import settings
from ..definition import Task, TaskContext, TaskEvent, normalize_payload, normalize_result
from ..exceptions import TaskNotImplemented
from .singleflight import SingleFlight

logger = logging.getLogger("taskkit.runner")

#: Inline runs in progress in this process.
flights = SingleFlight()


def build_context(task: Task, context: TaskContext | Mapping[str, Any] | None) -> TaskContext:
    """A :class:`TaskContext` for one run of ``task``; a mapping overrides single fields."""
    if isinstance(context, TaskContext):
        return context
    fields = dict(context or {})
    fields.setdefault("queue", task.meta.queue)
    fields.setdefault("logger", logging.getLogger(f"taskkit.tasks.{task.name}"))
    return TaskContext(**fields)


def _prepare(
    task: Task, payload: Mapping[str, Any] | None, context: TaskContext | Mapping[str, Any] | None
) -> tuple[TaskEvent, str]:
    if task.handler is None:
        raise TaskNotImplemented(task.name, task.missing_reason or "no handler")
    plain, canonical = normalize_payload(
        payload, schema=task.meta.schema, max_bytes=settings.MAX_PAYLOAD_BYTES
    )
    return TaskEvent(task.name, plain, build_context(task, context)), canonical


def _hook_failed(task: Task, hook: str) -> None:
    logger.exception("The %s hook of task %r raised; the run's outcome stands", hook, task.name)


def call(task: Task, event: TaskEvent) -> Any:
    """Call the handler once, without single-flight; return the JSON-normalised result."""
    assert task.handler is not None
    try:
        raw = async_to_sync(task.handler)(event) if task.is_async else task.handler(event)
        result = normalize_result(task.name, raw)
    except BaseException as exc:
        if task.meta.on_failure is not None:
            try:
                task.meta.on_failure(event, exc)
            except Exception:
                _hook_failed(task, "on_failure")
        raise
    if task.meta.on_success is not None:
        try:
            task.meta.on_success(event, result)
        except Exception:
            _hook_failed(task, "on_success")
    return result


async def acall(task: Task, event: TaskEvent) -> Any:
    """Async twin of :func:`call`; sync handlers and hooks run in a worker thread."""
    assert task.handler is not None
    try:
        if task.is_async:
            raw = await task.handler(event)
        else:
            raw = await sync_to_async(task.handler)(event)
        result = normalize_result(task.name, raw)
    except BaseException as exc:
        if task.meta.on_failure is not None:
            try:
                await sync_to_async(task.meta.on_failure)(event, exc)
            except Exception:
                _hook_failed(task, "on_failure")
        raise
    if task.meta.on_success is not None:
        try:
            await sync_to_async(task.meta.on_success)(event, result)
        except Exception:
            _hook_failed(task, "on_success")
    return result


def execute(
    task: Task,
    payload: Mapping[str, Any] | None = None,
    *,
    context: TaskContext | Mapping[str, Any] | None = None,
) -> Any:
    """Run ``task`` inline and return its result; equal concurrent runs share one execution."""
    event, canonical = _prepare(task, payload, context)
    if not task.meta.single_flight:
        return call(task, event)
    return flights.run((task.name, canonical), lambda: call(task, event))


async def aexecute(
    task: Task,
    payload: Mapping[str, Any] | None = None,
    *,
    context: TaskContext | Mapping[str, Any] | None = None,
) -> Any:
    """Async twin of :func:`execute`."""
    event, canonical = _prepare(task, payload, context)
    if not task.meta.single_flight:
        return await acall(task, event)
    return await flights.arun((task.name, canonical), lambda: acall(task, event))
