"""Check taskkit.E007: a Celery app that accepts pickle is refused."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery

from taskkit import checks


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Celery:
    """A Celery app the check reads instead of the current one."""
    app = Celery("security-check", set_as_current=False)
    monkeypatch.setattr(checks, "current_app", app)
    return app


def unsafe(app: Celery) -> list[Any]:
    return [e for e in checks.check_taskkit() if e.id == "taskkit.E007"]


def test_json_only_passes(app: Celery) -> None:
    assert unsafe(app) == []  # Celery's defaults: JSON


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("accept_content", ["json", "pickle"], "pickle"),
        ("accept_content", ["application/x-python-serialize"], "application/x-python-serialize"),
        ("task_serializer", "pickle", "pickle"),
        ("result_serializer", "pickle", "pickle"),
        ("result_accept_content", ("pickle",), "pickle"),
    ],
)
def test_pickle_anywhere_is_an_error(app: Celery, key: str, value: Any, named: str) -> None:
    app.conf[key] = value
    (error,) = unsafe(app)
    assert key in error.msg and named in error.msg
    assert f"CELERY_{key.upper()}" in (error.hint or "")
