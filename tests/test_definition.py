"""The task interface: the decorator, meta normalisation, and the frozen values."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from taskkit import (
    InvalidTaskDefinition,
    Lock,
    RetryPolicy,
    Scope,
    Source,
    Task,
    TaskContext,
    TaskEvent,
    Track,
    task,
)
from taskkit.definition.names import derive_name, validate_name


def handler(event: TaskEvent) -> None:
    """First line.

    More text."""


def test_bare_decorator_builds_a_task_with_defaults() -> None:
    value = task(handler)
    assert isinstance(value, Task)
    assert value.handler is handler
    assert value.description == "First line."
    assert value.queue == "default"
    assert value.meta.scope is Scope.ANY
    assert value.meta.retry == RetryPolicy()
    assert value.meta.single_flight is True
    assert value.meta.schedule is None
    # outside any tasks module a task is named after its dotted path
    assert value.name == f"{__name__}.handler"


def test_options_are_normalised() -> None:
    value = task(
        name="db:migrate",
        queue="maintenance",
        frequency=90,
        scope="any",
        retry=3,
        locks=["queue_lock", "single_instance"],
        lock_timeout=timedelta(minutes=5),
        timeout=30,
        track="failures",
        idempotent=True,
    )(handler)
    meta = value.meta
    assert value.name == "db:migrate" and meta.name == "db:migrate"
    assert meta.frequency == timedelta(seconds=90)
    assert meta.schedule == "Every 1 minute 30 seconds"
    assert meta.scope is Scope.ANY
    assert task(scope="all")(handler).meta.scope is Scope.ALL
    assert meta.retry == RetryPolicy(max_attempts=3)
    assert meta.locks == frozenset({Lock.QUEUE, Lock.SINGLE_INSTANCE})
    assert meta.lock_timeout == timedelta(minutes=5)
    assert meta.timeout == timedelta(seconds=30)
    assert meta.track is Track.FAILURES
    assert meta.idempotent is True


def test_cron_is_validated_and_aliases_expand() -> None:
    assert task(cron="@hourly")(handler).meta.cron == "0 * * * *"
    every_five = task(cron=" */5  *  * * MON-fri ")(handler).meta
    assert every_five.cron == "*/5 * * * mon-fri"
    assert every_five.schedule == "Every 5 minutes, Monday through Friday"
    assert task(locks="job_lock")(handler).meta.locks == frozenset({Lock.JOB})
    assert task(retry={"max_attempts": 2, "backoff": 0.5})(handler).meta.retry.backoff == 0.5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "* * * *"}, "has 4 fields"),
        ({"cron": "61 * * * *"}, "minute '61': Invalid end range: 61 > 59"),
        ({"cron": "0 3 * * 8"}, "day of week '8': Invalid end range: 8 > 6"),
        ({"cron": "*/0 * * * *"}, "slice step cannot be zero"),
        ({"cron": "* * * foo *"}, "month 'foo'"),
        ({"cron": "* * * * ?x"}, "day of week"),
        ({"cron": "0 0 31 2 *"}, "never occurs"),
        ({"cron": 5}, "is a string"),
        ({"frequency": 0}, "frequency must be positive"),
        ({"frequency": "60"}, "seconds or a timedelta"),
        ({"frequency": True}, "seconds or a timedelta"),
        ({"frequency": 60, "cron": "* * * * *"}, "not both"),
        ({"timeout": -1}, "timeout must be positive"),
        ({"scope": "some"}, "'some' is not a valid Scope"),
        ({"track": "everything"}, "not a valid Track"),
        ({"locks": ["forever"]}, "not a valid Lock"),
        ({"retry": 0}, "max_attempts must be an integer >= 1"),
        ({"retry": "often"}, "retry is an attempt count"),
        ({"retry": {"backoff": -1}}, "must not be negative"),
        ({"retry": {"retry_on": (int,)}}, "retry_on must hold exception classes"),
        ({"queue": ""}, "a queue name has 1 to 200 characters"),
        ({"name": "bad name"}, "not a valid task name"),
        ({"name": "db::x"}, "not a valid task name"),
        ({"on_success": "nope"}, "on_success must be callable"),
        ({"schema": 3}, "schema must be"),
        ({"colour": "red"}, "unexpected keyword argument 'colour'"),
    ],
)
def test_bad_options_fail_at_definition(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTaskDefinition, match=message):
        task(**options)(handler)


def test_handler_must_be_callable() -> None:
    with pytest.raises(InvalidTaskDefinition, match="pass options as keywords"):
        task("db:migrate")  # type: ignore[call-overload]


def test_task_is_frozen_and_using_returns_a_copy() -> None:
    value = task(name="x:y", queue="a")(handler)
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.name = "other"  # type: ignore[misc]
    urgent = value.using(queue="urgent", frequency=timedelta(seconds=5))
    assert (value.queue, urgent.queue) == ("a", "urgent")
    assert urgent.meta.frequency == timedelta(seconds=5)
    assert urgent.name == "x:y" and urgent.handler is handler
    assert value.using(name="x:z").name == "x:z"
    with pytest.raises(InvalidTaskDefinition, match="task 'x:y': a queue name has"):
        value.using(queue="")


def test_is_async() -> None:
    async def coroutine(event: TaskEvent) -> None:
        return None

    assert task(coroutine).is_async
    assert not task(handler).is_async


def test_retry_policy_backoff() -> None:
    policy = RetryPolicy(max_attempts=4, backoff=2, backoff_max=5, jitter=False)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [2, 4, 5, 5]
    jittery = RetryPolicy(backoff=8, jitter=True)
    assert all(4 <= jittery.delay(1) <= 8 for _ in range(50))
    assert policy.should_retry(3, ValueError())
    assert not policy.should_retry(4, ValueError())
    only = RetryPolicy(max_attempts=3, retry_on=(KeyError,))
    assert only.should_retry(1, KeyError()) and not only.should_retry(1, ValueError())


def test_context_defaults_and_progress() -> None:
    seen: list[tuple[int, int]] = []
    context = TaskContext(progress_reporter=lambda done, total: seen.append((done, total)))
    assert context.attempt == 1 and context.source is Source.INLINE and len(context.run_id) == 36
    assert TaskContext().run_id != context.run_id
    context.set_progress(0, 10)
    context.set_progress(10, 10)
    assert seen == [(0, 10), (10, 10)]
    TaskContext().set_progress(1, 2)  # the default reporter only logs


@pytest.mark.parametrize(
    ("done", "total", "error"),
    [
        (1, 0, ValueError),
        (-1, 5, ValueError),
        (6, 5, ValueError),
        (1.5, 5, TypeError),
        (True, 5, TypeError),
    ],
)
def test_bad_progress_is_refused(done: Any, total: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        TaskContext().set_progress(done, total)


@pytest.mark.parametrize(
    ("module", "function", "app", "expected"),
    [
        ("shop.tasks.db.migrate", "run", "shop", "db:migrate"),
        ("shop.tasks.emails", "run", "shop", "emails"),
        ("shop.tasks", "send_welcome", "shop", "send_welcome"),
        ("shop.tasks.a.b.c", "run", None, "a:b:c"),
        ("tasks.tasks.x", "run", "tasks", "x"),
        ("shop.views", "helper", "shop", "shop.views.helper"),
        ("shop.views", "helper", None, "shop.views.helper"),
        ("shop.jobs.x", "run", "shop", "shop.jobs.x.run"),
    ],
)
def test_derive_name(module: str, function: str, app: str | None, expected: str) -> None:
    assert derive_name(module, function, "tasks", app) == expected


@pytest.mark.parametrize("name", ["db:migrate", "a", "emails.send-welcome", "x:y:z", "_private"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", ":a", "a:", "a b", "a/b", "ä", "-a", 3, "x" * 201])
def test_invalid_names(name: Any) -> None:
    with pytest.raises(ValueError):
        validate_name(name)


def test_hooks_must_be_plain_functions() -> None:
    async def hook(event: TaskEvent, result: Any) -> None:
        return None

    with pytest.raises(InvalidTaskDefinition, match="plain function, not async def"):
        task(on_success=hook)(handler)
