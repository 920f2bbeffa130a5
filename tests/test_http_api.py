"""The HTTP API: listing, running, queueing; every status code, the merge rule, auth, CSRF."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client, override_settings
from django.urls import resolve, reverse

from taskkit import queues
from taskkit.api import views
from taskkit.checks import check_taskkit
from tests.integration.conftest import current, make_app, transport_settings
from tests.users import staff

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "t" * 40
SCRIPT = "<script>alert(1)</script>"
UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[None]:
    """A broker of this test's own, whose queues can be read back."""
    app = make_app("api", "filesystem://", **transport_settings("filesystem", tmp_path))
    with current(app):
        yield


@pytest.fixture
def manager() -> Client:
    return staff("manager", "manage_tasks")


def post(client: Client, path: str, body: Any = None, **extra: Any) -> Any:
    """POST ``body`` (JSON-encoded unless a string) to the API's ``path``."""
    data = body if isinstance(body, str) else json.dumps(body) if body is not None else ""
    return client.post(f"/_tasks/{path}", data, content_type="application/json", **extra)


# The listing


def test_the_listing_names_every_task_and_groups_schedules(
    manager: Client, reload_registry: Any
) -> None:
    hello = "tests.apps.nested.handlers.hello"
    reload_registry(
        "tests.apps.nested",
        "tests.apps.single",
        TASKKIT={
            "TASKS": {
                "every:minute": {"handler": hello, "frequency": 60},
                "also:minute": {"handler": hello, "frequency": 60},
                "every:second": {"handler": hello, "frequency": 1},
                "hourly:hello": {"handler": hello, "cron": "0 * * * *"},
            },
            # "@hourly" is "0 * * * *": the task scheduled both ways is listed once.
            "SCHEDULE": {"@hourly": ["hourly:hello", "echo:payload"], "@daily": "db:migrate"},
        },
    )
    response = manager.get("/_tasks/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["tasks"]["echo:payload"] == {"description": "Returns the provided payload."}
    assert body["tasks"]["every:minute"] == {
        "description": "Say hello (a plain function registered in settings)."
    }
    assert {"db:migrate", "echo:fail", "hourly:hello"} <= set(body["tasks"])
    assert body["scheduledTasks"] == [
        {
            "cron": "0 * * * *",
            "description": "Every hour",
            "tasks": ["echo:payload", "hourly:hello"],
        },
        {"cron": "0 0 * * *", "description": "At 00:00", "tasks": ["db:migrate"]},
        {"frequency": 1, "description": "Every second", "tasks": ["every:second"]},
        {
            "frequency": 60,
            "description": "Every minute",
            "tasks": ["also:minute", "every:minute"],
        },
    ]


def test_the_listing_without_schedules_and_its_methods(manager: Client) -> None:
    body = manager.get("/_tasks/").json()
    assert body["scheduledTasks"] == []
    assert {"echo:payload", "echo:shout", "plain:hello"} <= set(body["tasks"])
    refused = manager.post("/_tasks/")
    assert refused.status_code == 405 and refused["Allow"] == "GET, HEAD"
    assert refused.json() == {"error": "Use GET."}
    assert manager.head("/_tasks/").status_code == 200


# Running a task


def test_post_runs_the_task_with_the_query_merged_under_the_body(manager: Client) -> None:
    response = post(
        manager,
        "echo:payload?field=value&array=1&array=2&answer=query",
        {"payload": {"answer": 42, "nested": {"value": True}}},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "result": {"field": "value", "array": ["1", "2"], "answer": 42, "nested": {"value": True}}
    }


@pytest.mark.parametrize(
    ("query", "body", "payload"),
    [
        ("n=1", None, {"n": "1"}),  # no body; a number in the query stays a string
        ("n=1&n=1", None, {"n": ["1", "1"]}),  # repeated, even with one value
        ("flag=&n=true", "", {"flag": "", "n": "true"}),
        ("n=1", {}, {"n": "1"}),  # a body without "payload"
        ("n=1", {"payload": {"n": None}}, {"n": None}),  # the body wins, even with null
        ("", {"payload": {"n": [1]}, "other": "ignored"}, {"n": [1]}),
    ],
)
def test_the_merge_rule(manager: Client, query: str, body: Any, payload: Any) -> None:
    response = post(manager, f"echo:payload?{query}", body)
    assert response.status_code == 200
    assert response.json() == {"result": payload}


def test_a_body_sent_without_a_json_content_type_is_read_as_json(manager: Client) -> None:
    # curl -d without -H "Content-Type: application/json" sends a form content type.
    response = manager.post(
        "/_tasks/echo:payload",
        '{"payload": {"a": 1}}',
        content_type="application/x-www-form-urlencoded",
    )
    assert response.json() == {"result": {"a": 1}}


def test_a_script_payload_comes_back_as_inert_json(manager: Client) -> None:
    response = post(manager, f"echo:payload?q={SCRIPT}", {"payload": {"x": SCRIPT}})
    assert response["Content-Type"] == "application/json"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"<" not in response.content and b">" not in response.content
    assert b"\\u003cscript\\u003e" in response.content
    assert response.json() == {"result": {"q": SCRIPT, "x": SCRIPT}}


def test_errors_are_inert_json_too(manager: Client) -> None:
    name = "<img src=x onerror=alert(1)>"
    response = post(manager, quote(name))
    assert response.status_code == 404
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"<" not in response.content
    assert name in response.json()["error"]


# Queueing a task


@pytest.mark.usefixtures("broker")
@pytest.mark.parametrize("flag", ["enqueue=1", "enqueue", "enqueue=true", "enqueue=ON"])
def test_enqueue_queues_the_run_and_returns_its_id(manager: Client, flag: str) -> None:
    response = post(manager, f"echo:payload?{flag}&q=1", {"payload": {"b": 2}})
    assert response.status_code == 202
    assert response["Content-Type"] == "application/json"
    (message,) = queues.list("default")
    assert response.json() == {"id": message.run_id, "status": "queued"}
    assert message.name == "echo:payload"
    assert message.payload == {"q": "1", "b": 2}  # "enqueue" is the API's, not the payload's


@pytest.mark.usefixtures("broker")
@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ('{"payload": ' + '{"a": ' * 3_000 + "1" + "}" * 3_000 + "}", "nests more than 100"),
        ('{"payload": {"text": "\\udc00"}}', "lone surrogate"),
    ],
    ids=["3000-deep", "lone-surrogate"],
)
def test_a_payload_no_worker_could_take_is_a_400_and_queues_nothing(
    manager: Client, body: str, complaint: str
) -> None:
    """Once, 6 KB nested 3,000 deep was queued (202) and crash-looped every prefork worker."""
    response = post(manager, "echo:payload?enqueue=1", body)
    assert response.status_code == 400
    assert complaint in response.json()["error"]
    assert queues.list("default") == []


@pytest.mark.usefixtures("broker")
def test_enqueue_0_runs_the_task_inline(manager: Client) -> None:
    response = post(manager, "echo:payload?enqueue=0&q=1")
    assert response.status_code == 200
    assert response.json() == {"result": {"q": "1"}}
    assert queues.list("default") == []


@pytest.mark.usefixtures("broker")
def test_enqueue_says_when_a_queue_lock_kept_the_twin(manager: Client) -> None:
    first = post(manager, "locks:queued?enqueue=1&k=1").json()
    second = post(manager, "locks:queued?enqueue=1&k=1").json()
    assert first == {"id": first["id"], "status": "queued"}
    assert second == {"id": first["id"], "status": "queued", "deduplicated": True}
    assert [message.run_id for message in queues.list("default")] == [first["id"]]


def test_an_unreachable_broker_is_503(manager: Client, caplog: pytest.LogCaptureFixture) -> None:
    with current(make_app("away", UNREACHABLE, broker_connection_timeout=0.2)):
        response = post(manager, "echo:payload?enqueue=1")
    assert response.status_code == 503
    assert "echo:payload" in response.json()["error"]
    assert any(record.name == "taskkit.api" for record in caplog.records)


def test_an_unreachable_broker_is_503_with_atomic_requests_too(
    manager: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a request-wide transaction the message would leave after the view had answered 202.
    monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)
    with current(make_app("away", UNREACHABLE, broker_connection_timeout=0.2)):
        response = post(manager, "echo:payload?enqueue=1")
    assert response.status_code == 503
    assert "error" in response.json()


# Status codes


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("echo:payload", "{not json", "not valid JSON"),
        ("echo:payload", "[1, 2]", "must be a JSON object, not list"),
        ("echo:payload", '"text"', "must be a JSON object, not str"),
        ("echo:payload", {"payload": [1]}, "'payload' must be a JSON object, not list"),
        ("echo:payload", {"payload": None}, "'payload' must be a JSON object, not NoneType"),
        ("echo:payload", "[" * 100_000 + "]" * 100_000, "nests more than 100 levels deep"),
        ("echo:payload?enqueue=maybe", None, "'enqueue' must be 1 or 0, not 'maybe'"),
    ],
)
def test_bad_requests_are_400(manager: Client, path: str, body: Any, message: str) -> None:
    response = post(manager, path, body)
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize("flag", ["", "?enqueue=1"])
def test_an_invalid_payload_is_400(manager: Client, flag: str) -> None:
    with override_settings(TASKKIT={"MAX_PAYLOAD_BYTES": 10}):
        response = post(manager, f"echo:payload{flag}", {"payload": {"much": "x" * 20}})
    assert response.status_code == 400
    assert "bytes" in response.json()["error"]


def test_a_body_over_djangos_upload_limit_is_400(manager: Client) -> None:
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100):
        response = post(manager, "echo:payload", {"payload": {"much": "x" * 200}})
    assert response.status_code == 400
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["error"]


def test_an_unknown_task_is_404_whatever_the_method(manager: Client) -> None:
    for response in (manager.get("/_tasks/no:such"), post(manager, "no:such")):
        assert response.status_code == 404
        assert "no:such" in response.json()["error"]
    close = post(manager, "echo:payloads")
    assert "Did you mean: echo:payload" in close.json()["error"]


def test_a_get_on_a_task_runs_nothing(manager: Client) -> None:
    for response in (
        manager.get("/_tasks/echo:fail?n=1"),
        manager.head("/_tasks/echo:fail"),
        manager.put("/_tasks/echo:fail"),
    ):
        assert response.status_code == 405
        assert response["Allow"] == "POST"
    assert manager.get("/_tasks/echo:fail").json() == {"error": "Use POST to run a task."}


def test_a_failing_task_is_500_with_its_message_only(
    manager: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="taskkit.api"):
        response = post(manager, "echo:fail", {"payload": {"n": 1}})
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": "EchoError: failed with {'n': 1}"}
    assert "Traceback" not in response.content.decode()
    (record,) = [r for r in caplog.records if r.name == "taskkit.api"]  # the log keeps it
    assert record.exc_info is not None and type(record.exc_info[1]).__name__ == "EchoError"


@pytest.mark.parametrize("flag", ["", "?enqueue=1"])
def test_a_task_without_handler_is_501(manager: Client, reload_registry: Any, flag: str) -> None:
    reload_registry("tests.apps.nested", TASKKIT={"TASKS": {"gone:away": {"handler": "x.y"}}})
    response = post(manager, f"gone:away{flag}")
    assert response.status_code == 501
    assert "gone:away" in response.json()["error"]


# Who may call


def test_who_may_call() -> None:
    anonymous = Client()
    for response in (
        anonymous.get("/_tasks/"),
        anonymous.post("/_tasks/"),
        post(anonymous, "echo:payload"),
        post(anonymous, "no:such"),  # unknown tasks are not revealed either
    ):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == "Bearer"
        assert "error" in response.json()
    nobody = staff("nobody")
    assert nobody.get("/_tasks/").status_code == 403
    assert post(nobody, "echo:payload").status_code == 403
    viewer = staff("viewer", "view_dashboard")
    assert viewer.get("/_tasks/").status_code == 200
    assert viewer.get("/_tasks/echo:payload").status_code == 405
    refused = post(viewer, "echo:payload")
    assert refused.status_code == 403
    assert refused.json() == {"error": "This needs the permission taskkit.manage_tasks."}


def test_the_permission_is_not_enough_without_staff(manager: Client) -> None:
    User.objects.filter(username="manager").update(is_staff=False)
    assert post(manager, "echo:payload").status_code == 403
    assert manager.get("/_tasks/").status_code == 403


def test_bearer_tokens() -> None:
    client = Client()
    right = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    wrong = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN[:-1]}x"}
    disabled = post(client, "echo:payload?n=1", **right)  # no token set: token auth is off
    assert disabled.status_code == 401
    assert disabled["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    with override_settings(TASKKIT={"API_TOKEN": TOKEN}):
        assert post(client, "echo:payload?n=1", **right).json() == {"result": {"n": "1"}}
        lower = {"HTTP_AUTHORIZATION": f"bearer {TOKEN}"}  # the scheme is case-insensitive
        assert post(client, "echo:payload?n=1", **lower).status_code == 200
        assert (
            client.get("/_tasks/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        )
        for headers in (wrong, {"HTTP_AUTHORIZATION": "Bearer "}, {}):
            response = post(client, "echo:payload", **headers)
            assert response.status_code == 401
            assert "error" in response.json()
        # A wrong token is refused even when a staff session comes with it.
        assert post(staff("manager", "manage_tasks"), "echo:payload", **wrong).status_code == 401


def test_session_posts_need_the_csrf_token() -> None:
    client = staff("manager", "manage_tasks", csrf=True)
    refused = post(client, "echo:payload?n=1")
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    assert client.get("/_tasks/").status_code == 200  # reading needs none
    client.get("/admin/")  # any page that renders a form sets the cookie
    token = client.cookies["csrftoken"].value
    accepted = post(client, "echo:payload?n=1", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200 and accepted.json() == {"result": {"n": "1"}}
    with override_settings(TASKKIT={"API_TOKEN": TOKEN}):  # a token needs no CSRF
        bearer = post(
            Client(enforce_csrf_checks=True), "echo:payload", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
        )
        assert bearer.status_code == 200


def test_a_form_body_from_a_session_is_400_not_a_crash() -> None:
    # The CSRF check reads a multipart form first; the body must still be readable.
    client = staff("former", "manage_tasks", csrf=True)
    client.get("/admin/")
    token = client.cookies["csrftoken"].value
    response = client.post("/_tasks/echo:payload", {"csrfmiddlewaretoken": token, "a": "1"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


# Mounting and settings


def test_the_test_and_demo_projects_mount_it_at_tasks() -> None:
    assert reverse("taskkit:api-index") == "/_tasks/"
    assert reverse("taskkit:api-task", args=["echo:payload"]) == "/_tasks/echo:payload"
    demo = "testproject.urls"
    assert resolve("/_tasks/", urlconf=demo).func is views.index
    assert resolve("/_tasks/db:migrate", urlconf=demo).func is views.task


@pytest.mark.parametrize(
    ("token", "valid"),
    [(TOKEN, True), (None, True), ("short", False), ("", False), (12345, False)],
)
def test_the_token_setting_is_checked(token: Any, valid: bool) -> None:
    with override_settings(TASKKIT={"API_TOKEN": token}):
        errors = [e for e in check_taskkit() if "API_TOKEN" in e.msg]
    assert not errors if valid else errors[0].id == "taskkit.E017"
