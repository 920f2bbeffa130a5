"""The HTTP API: listing, running, queueing; every status code, the merge rule, auth, CSRF."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, override_settings

from taskkit import queues
from tests.integration.conftest import current, make_app, transport_settings
from tests.users import staff

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "t" * 40
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[None]:
    app = make_app("api", "filesystem://", **transport_settings("filesystem", tmp_path))
    with current(app):
        yield


@pytest.fixture
def manager() -> Client:
    return staff("manager", "manage_tasks")


def post(client: Client, path: str, body: Any = None, **extra: Any) -> Any:
    data = body if isinstance(body, str) else json.dumps(body) if body is not None else ""
    return client.post(f"/_tasks/{path}", data, content_type="application/json", **extra)


def test_the_listing_names_every_task_and_groups_schedules(
    manager: Client, reload_registry: Any
) -> None:
    reload_registry(
        "tests.apps.nested",
        "tests.apps.single",
        TASKKIT={
            "TASKS": {
                "every:minute": {"handler": "tests.apps.nested.handlers.hello", "frequency": 60}
            },
            "SCHEDULE": {"0 * * * *": ["db:migrate", "echo:payload"]},
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
    assert {"cron": "0 * * * *", "tasks": ["db:migrate", "echo:payload"]} in body["scheduledTasks"]
    assert {"frequency": 60, "tasks": ["every:minute"]} in body["scheduledTasks"]
    assert manager.post("/_tasks/").status_code == 405


def test_post_runs_the_task_with_the_query_merged_under_the_body(manager: Client) -> None:
    response = post(
        manager,
        "echo:payload?field=value&array=1&array=2&answer=query",
        {"payload": {"answer": 42, "nested": {"value": True}}},
    )
    assert response.status_code == 200
    assert response.json() == {
        "result": {"field": "value", "array": ["1", "2"], "answer": 42, "nested": {"value": True}}
    }
    assert post(manager, "echo:payload?n=1").json() == {"result": {"n": "1"}}  # no body


def test_a_script_payload_comes_back_as_inert_json(manager: Client) -> None:
    response = post(manager, "echo:payload", {"payload": {"x": SCRIPT}})
    assert response["Content-Type"] == "application/json"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.json() == {"result": {"x": SCRIPT}}


@pytest.mark.usefixtures("broker")
def test_enqueue_queues_the_run_and_returns_its_id(manager: Client) -> None:
    response = post(manager, "echo:payload?enqueue=1&q=1", {"payload": {"b": 2}})
    assert response.status_code == 202
    (message,) = queues.list("default")
    assert response.json() == {"id": message.run_id, "status": "queued"}
    assert message.payload == {"q": "1", "b": 2}  # "enqueue" is the API's, not the payload's


def test_an_unreachable_broker_is_503(manager: Client) -> None:
    away = make_app("away", "redis://127.0.0.1:1/0", broker_connection_timeout=0.2)
    with current(away):
        response = post(manager, "echo:payload?enqueue=1")
    assert response.status_code == 503
    assert "error" in response.json()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, not list"),
        ({"payload": [1]}, "'payload' must be a JSON object, not list"),
    ],
)
def test_bad_bodies_are_400(manager: Client, body: Any, message: str) -> None:
    response = post(manager, "echo:payload", body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_an_invalid_payload_is_400(manager: Client) -> None:
    with override_settings(TASKKIT={"MAX_PAYLOAD_BYTES": 10}):
        response = post(manager, "echo:payload", {"payload": {"much": "x" * 20}})
    assert response.status_code == 400
    assert "bytes" in response.json()["error"]


def test_status_codes_of_the_task_endpoint(manager: Client, reload_registry: Any) -> None:
    assert manager.get("/_tasks/no:such").status_code == 404
    unknown = post(manager, "no:such")
    assert unknown.status_code == 404 and "no:such" in unknown.json()["error"]
    link = manager.get("/_tasks/echo:payload")
    assert link.status_code == 405 and link["Allow"] == "POST"
    failing = post(manager, "echo:fail", {"payload": {"n": 1}})
    assert failing.status_code == 500
    assert failing.json() == {"error": "EchoError: failed with {'n': 1}"}
    assert "Traceback" not in failing.content.decode()
    reload_registry("tests.apps.nested", TASKKIT={"TASKS": {"gone:away": {"handler": "x.y"}}})
    assert post(manager, "gone:away").status_code == 501


def test_who_may_call() -> None:
    anonymous = Client()
    for response in (anonymous.get("/_tasks/"), post(anonymous, "echo:payload")):
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
    nobody = staff("nobody")
    assert nobody.get("/_tasks/").status_code == 403
    viewer = staff("viewer", "view_dashboard")
    assert viewer.get("/_tasks/").status_code == 200
    refused = post(viewer, "echo:payload")
    assert refused.status_code == 403 and "taskkit.manage_tasks" in refused.json()["error"]


def test_bearer_tokens() -> None:
    client = Client()
    right = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    wrong = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN[:-1]}x"}
    assert post(client, "echo:payload?n=1", **right).status_code == 401  # no token set: off
    with override_settings(TASKKIT={"API_TOKEN": TOKEN}):
        assert post(client, "echo:payload?n=1", **right).json() == {"result": {"n": "1"}}
        assert (
            client.get("/_tasks/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        )
        assert post(client, "echo:payload", **wrong).status_code == 401
        assert post(client, "echo:payload").status_code == 401


def test_session_posts_need_the_csrf_token() -> None:
    client = staff("manager", "manage_tasks", csrf=True)
    refused = post(client, "echo:payload?n=1")
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    assert client.get("/_tasks/").status_code == 200  # reading needs none
    client.get("/admin/")  # any page that renders a form sets the cookie
    token = client.cookies["csrftoken"].value
    accepted = post(client, "echo:payload?n=1", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200
    with override_settings(TASKKIT={"API_TOKEN": TOKEN}):  # a token needs no CSRF
        bearer = post(
            Client(enforce_csrf_checks=True), "echo:payload", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
        )
        assert bearer.status_code == 200
