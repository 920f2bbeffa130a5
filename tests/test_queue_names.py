"""One queue name rule, checked wherever a queue is named; names stored before it do no harm."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

import taskkit
from taskkit.bridge.send import enqueue as enqueue_module
from taskkit.bridge.send.known_queues import known_queues
from taskkit.definition.names import validate_queue_name
from taskkit.exceptions import BrokerUnavailable, InvalidTaskDefinition
from taskkit.models import KnownQueue, TaskRun
from taskkit.queues import Details, QueueInfo

REFUSED = r"queue name|keeps for itself"
GOOD = ["default", "emails.send", "tenant:42", "high@eu", "a-b_c", "_private", "x" * 200]
BAD = [
    "",
    " ",
    "a/b",
    "a b",
    "line\nbreak",
    "nul\x00",
    "x" * 201,
    "-leading-dash",
    "celeryev",
    "celeryev.1234",
    "_kombu.binding.default",
    "worker@host.celery.pidbox",
    "celery.pidbox",
    "amq.gen-abc",
    "unacked",
    "taskkit.broadcast",
]


@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize("name", [*BAD, 5, None])
def test_bad_names_are_refused_with_a_reason(name: Any) -> None:
    with pytest.raises(ValueError, match=REFUSED):
        validate_queue_name(name)


def test_a_task_declared_on_a_bad_queue_does_not_import() -> None:
    with pytest.raises(InvalidTaskDefinition, match="not a valid queue name"):
        taskkit.task(queue="a/b")(lambda event: None)


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["celeryev", "a/b", "_kombu.binding.default", "x" * 10_000])
def test_enqueue_on_a_bad_queue_stores_and_sends_nothing(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(enqueue_module, "publish", sent.extend)
    with pytest.raises(ValueError, match=REFUSED):
        taskkit.enqueue("echo:payload", {}, queue=name)
    with pytest.raises(ValueError, match=REFUSED):
        taskkit.enqueue_in("echo:payload", 60, {}, queue=name)
    assert (sent, KnownQueue.objects.count(), TaskRun.objects.count()) == ([], 0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_queue_whose_enqueue_failed_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(runs: Any) -> None:
        raise BrokerUnavailable("the broker is unreachable")

    monkeypatch.setattr(enqueue_module, "publish", down)
    with pytest.raises(BrokerUnavailable):
        taskkit.enqueue("echo:payload", {}, queue="never-sent")
    assert not KnownQueue.objects.filter(name="never-sent").exists()
    monkeypatch.setattr(enqueue_module, "publish", lambda runs: None)
    taskkit.enqueue("echo:payload", {}, queue="sent")
    assert KnownQueue.objects.filter(name="sent").exists()


@pytest.mark.django_db
def test_names_stored_before_the_rule_are_left_out_of_the_known_queues() -> None:
    KnownQueue.objects.bulk_create([KnownQueue(name=n) for n in ("celeryev", "a/b", "fine")])
    known = known_queues()
    assert "fine" in known
    assert not {"celeryev", "a/b"} & set(known)


@pytest.mark.django_db
def test_the_dashboard_lists_a_queue_it_cannot_link(
    monkeypatch: pytest.MonkeyPatch, client: Client
) -> None:
    """A queue the broker shows under a name against the rule (``a/b``): listed, no 500."""
    odd = Details("redis", [QueueInfo("a/b", 3), QueueInfo("default", 1)], 0, 0, 0)
    monkeypatch.setattr(taskkit.queues, "details", lambda: odd)
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    page = client.get("/admin/taskkit/dashboard/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "<td>a/b</td>" in body
    assert 'href="/admin/taskkit/dashboard/queues/default/"' in body


def test_django_tasks_queues_are_checked() -> None:
    from taskkit.backends import CeleryBackend

    backend = CeleryBackend("celery", {"QUEUES": ["default", "a/b", "celeryev"]})
    errors = backend.check()
    assert [e.id for e in errors] == ["taskkit.E030", "taskkit.E030"]
    assert "'a/b' is not a valid queue name" in errors[0].msg


def test_celery_settings_naming_a_bad_queue_are_reported() -> None:
    from celery import current_app
    from django.core.checks import run_checks

    routes = current_app.conf.task_routes
    current_app.conf.task_routes = {"reports:*": {"queue": "a/b"}}
    try:
        errors = [m for m in run_checks(tags=["taskkit"]) if m.id == "taskkit.E031"]
    finally:
        current_app.conf.task_routes = routes
    assert len(errors) == 1
    assert "task_routes['reports:*']: 'a/b' is not a valid queue name" in errors[0].msg


@pytest.mark.django_db
def test_a_star_worker_consumes_the_queues_of_the_django_tasks_backends() -> None:
    backends = {
        "default": {"BACKEND": "taskkit.backends.CeleryBackend", "QUEUES": ["reports-dt"]},
        "other": {"BACKEND": "taskkit.backends.CeleryBackend", "QUEUES": ["mail-dt", "a/b"]},
    }
    assert "reports-dt" not in known_queues()
    with override_settings(TASKS=backends):
        names = known_queues()
    assert {"reports-dt", "mail-dt"} <= set(names) and "a/b" not in names
