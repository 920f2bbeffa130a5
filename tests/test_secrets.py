"""Secrets stay secret: broker passwords and the API token appear in no log, error, page or output.

Each test makes the secret-bearing part fail (an unreachable or refusing broker,
a management API that does not answer, a wrong or short token), collects every
place a secret could leak to (log records at DEBUG, exception messages and
tracebacks with their causes, command output, admin pages, HTTP responses),
and looks for the secret in all of it.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse

import taskkit
from taskkit import queues
from tests.integration.conftest import current, make_app
from tests.users import staff

pytestmark = pytest.mark.django_db(transaction=True)

BROKER_PASSWORD = "broker-Pa55-7f3a0c"
MANAGEMENT_PASSWORD = "mgmt-Pa55-91bc2d"
TOKEN = "api-token-5e1f0a9b8c7d6e5f4a3b2c1d"


class Leaks:
    """Everything a test saw, searched for secrets at the end."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.seen: list[str] = []

    def error(self, action: Callable[[], object]) -> BaseException:
        """Run ``action``, which must raise; keep its message and whole traceback."""
        try:
            action()
        except Exception as exc:
            self.seen += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
            return exc
        raise AssertionError("expected an error")

    def command(self, *args: str) -> None:
        """Run a management command; keep its output or its error."""
        out, err = StringIO(), StringIO()
        try:
            call_command(*args, stdout=out, stderr=err)
        except Exception as exc:
            self.seen += [str(exc), "".join(traceback.format_exception(exc))]
        self.seen += [out.getvalue(), err.getvalue()]

    def response(self, response: Any) -> Any:
        self.seen += [response.content.decode(), str(response.headers)]
        return response

    def assert_none_of(self, *secrets: str) -> None:
        text = "\n".join([*self.seen, self.caplog.text])
        text += "\n".join(str(record.__dict__) for record in self.caplog.records)
        assert text.strip(), "nothing was collected"
        for secret in secrets:
            assert secret not in text


@pytest.fixture
def leaks(caplog: pytest.LogCaptureFixture) -> Leaks:
    caplog.set_level(logging.DEBUG)
    return Leaks(caplog)


@pytest.fixture
def manager() -> Client:
    return staff("manager", "manage_tasks", "view_dashboard")


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{BROKER_PASSWORD}@127.0.0.1:1/0",  # nobody listens
        f"amqp://guest:{BROKER_PASSWORD}@127.0.0.1:5672//",  # RabbitMQ refuses the login
    ],
)
def test_a_broker_password_stays_out_of_errors_logs_pages_and_output(
    leaks: Leaks, manager: Client, url: str
) -> None:
    app = make_app("secrets", url, broker_connection_timeout=0.5, broker_connection_max_retries=0)
    with current(app):
        refused = leaks.error(lambda: taskkit.enqueue("echo:payload", {"a": 1}))
        assert isinstance(refused, taskkit.BrokerUnavailable)  # a clear error, not a crash
        leaks.error(lambda: queues.details())
        leaks.command("taskqueue", "details")
        leaks.command("runtask", "echo:payload", "--enqueue")
        dashboard = leaks.response(manager.get(reverse("admin:taskkit_dashboard_changelist")))
        assert dashboard.status_code == 200
        api = leaks.response(
            manager.post("/_tasks/echo:payload?enqueue=1", "{}", content_type="application/json")
        )
        assert api.status_code == 503
    app.close()
    assert "unreachable" in str(refused)  # what the operator needs is there, the password not
    leaks.assert_none_of(BROKER_PASSWORD)


def test_the_management_api_password_stays_out_of_logs(leaks: Leaks, manager: Client) -> None:
    setting = {"RABBITMQ_MANAGEMENT_URL": f"http://admin:{MANAGEMENT_PASSWORD}@127.0.0.1:1/"}
    app = make_app("secrets-management", "amqp://guest:guest@127.0.0.1:5672//")
    with override_settings(TASKKIT=setting), current(app):
        details = queues.details()  # the API does not answer: the queues known otherwise
        assert details.queues is not None
        leaks.command("taskqueue", "details")
        leaks.response(manager.get(reverse("admin:taskkit_dashboard_changelist")))
    app.close()
    assert any("did not answer" in record.getMessage() for record in leaks.caplog.records)
    leaks.assert_none_of(MANAGEMENT_PASSWORD)


def test_the_api_token_stays_out_of_responses_logs_and_checks(leaks: Leaks) -> None:
    client = Client()
    with override_settings(TASKKIT={"API_TOKEN": TOKEN}):
        for header in (f"Bearer {TOKEN[:-1]}x", f"Bearer {TOKEN}{TOKEN}", "Basic x"):
            response = leaks.response(
                client.post(
                    "/_tasks/echo:payload", "{}", "application/json", HTTP_AUTHORIZATION=header
                )
            )
            assert response.status_code == 401
        ok = leaks.response(client.get("/_tasks/", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))
        assert ok.status_code == 200
    short = TOKEN[:12]
    with override_settings(TASKKIT={"API_TOKEN": short}):
        messages = [m for m in run_checks(tags=["taskkit"]) if "API_TOKEN" in m.msg]
        assert messages
        leaks.seen += [str(m) for m in messages]
    leaks.assert_none_of(TOKEN, short)
