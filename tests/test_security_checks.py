"""Checks on the Celery app: pickle (E007), Redis redelivery (W002), production brokers (W003/4)."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery
from django.test import override_settings

from taskkit import checks
from taskkit.embedded import celery_settings


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


def warned(check_id: str) -> list[Any]:
    return [m for m in checks.check_taskkit() if m.id == check_id]


def test_an_idempotent_task_that_may_outlast_redis_visibility_is_a_warning(app: Celery) -> None:
    app.conf["broker_url"] = "redis://127.0.0.1:6379/0"
    (warning,) = warned("taskkit.W002")  # crash:idempotent: no timeout, Redis' default 3600 s
    assert "'crash:idempotent'" in warning.msg and "without a time limit" in warning.msg
    assert "3600 s" in warning.msg and "visibility_timeout" in (warning.hint or "")
    app.conf["broker_url"] = (
        "amqp://guest:guest@127.0.0.1:5672//"  # RabbitMQ never redelivers early
    )
    assert warned("taskkit.W002") == []


@pytest.mark.django_db
def test_the_warning_weighs_the_hard_time_limit_against_the_visibility_timeout(
    app: Celery, reload_registry: Any
) -> None:
    reload_registry(
        "tests.apps.nested",
        TASKKIT={
            "TASKS": {
                "long:one": {"handler": "tests.apps.nested.handlers.hello", "idempotent": True,
                             "timeout": 100},
                "short:one": {"handler": "tests.apps.nested.handlers.hello", "idempotent": True,
                              "timeout": 10},
            }
        },
    )  # fmt: skip
    app.conf["broker_url"] = "redis://127.0.0.1:6379/0"
    app.conf["broker_transport_options"] = {"visibility_timeout": 60}
    names = {m.msg.split("'")[1] for m in warned("taskkit.W002")}
    assert names == {"long:one", "crash:idempotent"}  # 110 s hard limit > 60 s; 15 s is fine
    assert "up to 110 s" in next(m.msg for m in warned("taskkit.W002") if "long:one" in m.msg)


@override_settings(DEBUG=False)
@pytest.mark.parametrize(
    ("url", "use_ssl", "warns"),
    [
        ("redis://:pw@redis.internal:6379/0", None, True),
        ("amqp://u:pw@rabbit.internal:5672//", None, True),
        ("redis://127.0.0.1:6379/0;redis://10.0.0.2:6379/0", None, True),  # failover to a remote
        ("rediss://redis.internal:6379/0", None, False),
        ("amqp://rabbit.internal//", {"cert_reqs": 2}, False),
        ("redis://localhost:6379/0", None, False),
    ],
)
def test_a_broker_across_the_network_without_tls_is_a_warning_in_production(
    app: Celery, url: str, use_ssl: Any, warns: bool
) -> None:
    app.conf["broker_url"] = url
    app.conf["broker_use_ssl"] = use_ssl
    found = warned("taskkit.W003")
    assert bool(found) == warns
    assert all("pw" not in m.msg for m in found)  # the host is named, never the password
    with override_settings(DEBUG=True):
        assert warned("taskkit.W003") == []


def test_the_embedded_broker_is_a_warning_in_production(app: Celery, tmp_path: Any) -> None:
    embedded = celery_settings(tmp_path)
    app.conf["broker_url"] = embedded["CELERY_BROKER_URL"]
    app.conf["broker_transport"] = embedded["CELERY_BROKER_TRANSPORT"]
    with override_settings(DEBUG=True):
        assert warned("taskkit.W004") == []
    with override_settings(DEBUG=False):
        (warning,) = warned("taskkit.W004")
    assert "embedded" in warning.msg
