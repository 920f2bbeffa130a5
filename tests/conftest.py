"""Shared fixtures of taskkit's test suite."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.app.task import Task
from django.apps import AppConfig, apps
from django.test import override_settings
from hypothesis import settings as hypothesis_settings

from taskkit import registry
from taskkit.registry import TaskRegistry
from tests.integration.conftest import current, make_app, transport_settings

pytest_plugins = ["taskkit.testing"]

#: The Redis database the unit tests empty as they please. Another one
#: (``TASKKIT_TEST_SCRATCH_REDIS_URL``), with ``TASKKIT_TEST_REDIS_URL`` and
#: ``TASKKIT_TEST_COUNTS``, lets a second test run go on beside this one.
SCRATCH_REDIS_URL = os.environ.get("TASKKIT_TEST_SCRATCH_REDIS_URL", "redis://127.0.0.1:6379/11")

# Property tests check answers, not speed: on a loaded 2-core CI machine Hypothesis'
# 200 ms deadline failed an example that passes in 2 ms alone.
hypothesis_settings.register_profile("taskkit", deadline=None)
hypothesis_settings.load_profile("taskkit")


class RevokedIn:
    """Celery's result backend of a task in process, as far as the delivery of a cancelled
    run uses it: the runs it was told were revoked, with the reason."""

    def __init__(self) -> None:
        self.revoked: list[tuple[str, str]] = []

    def mark_as_revoked(self, task_id: str, reason: str = "", request: Any = None) -> None:
        self.revoked.append((task_id, reason))


@pytest.fixture
def reload_registry() -> Iterator[Callable[..., TaskRegistry]]:
    """Rebuild the registry from chosen apps and settings; the real one comes back afterwards.

    ``reload_registry("tests.apps.dupes_a", TASKKIT={...})`` discovers only the
    named app modules (installed or not) under the given settings.
    """
    overrides: list[override_settings] = []

    def load(*app_modules: str, **settings: Any) -> TaskRegistry:
        if settings:
            override = override_settings(**settings)
            override.enable()
            overrides.append(override)
        configs = [AppConfig.create(name) for name in app_modules] if app_modules else None
        return registry.load(configs)

    yield load
    for override in reversed(overrides):
        override.disable()
    registry.load(apps.get_app_configs())


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every message published, as (task name, kwargs, options)."""
    messages: list[dict[str, Any]] = []

    def apply_async(
        self: Task[Any, Any], args: Any = None, kwargs: Any = None, **options: Any
    ) -> None:
        messages.append({"name": self.name, "kwargs": kwargs, **options})

    monkeypatch.setattr(Task, "apply_async", apply_async)
    return messages


@pytest.fixture(autouse=True)
def _forget_remembered_queues() -> Iterator[None]:
    """Each test starts with no queue remembered by the process.

    ``remember`` writes a queue's row once per process; a test database emptied
    between tests (``transaction=True``) would otherwise lose the row for good,
    and a later test's queue would be unknown.
    """
    yield
    from taskkit.bridge.send import known_queues

    known_queues._remembered.clear()


@pytest.fixture
def embedded_broker(tmp_path: Path) -> Iterator[Celery]:
    """A broker of the test's own, the embedded one, made current: reachable, empty, and
    never the machine's."""
    app = make_app("embedded", "filesystem://", **transport_settings("filesystem", tmp_path))
    with current(app):
        yield app
    app.close()


@pytest.fixture
def scratch_redis() -> Iterator[redis.Redis]:
    """A client of the scratch database (:data:`SCRATCH_REDIS_URL`), empty at the start
    and emptied again at the end."""
    client = redis.Redis.from_url(SCRATCH_REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
