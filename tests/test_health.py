"""taskkit.queues.health, ``taskqueue health`` and ``GET /_tasks/health``: each check failing for real."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

import taskkit
from taskkit import queues
from taskkit.bridge.work import heartbeat
from taskkit.bridge.work.about import About
from taskkit.checks import check_taskkit
from taskkit.models import RunStatus, SchedulerLease, TaskRun, WorkerHeartbeat
from taskkit.quarantine import QUARANTINE
from taskkit.queues.health import LIVENESS, READINESS, consumers_answer
from taskkit.scheduling import lease
from tests.integration.conftest import current, make_app
from tests.users import staff

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "broker-Pa55-health"
UNREACHABLE = f"redis://:{PASSWORD}@127.0.0.1:1/0"  # nobody listens
TOKEN = "h" * 40
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def leader() -> None:
    """A Beat leads: it holds a fresh lease."""
    assert lease.hold(lease.BEAT, "beat-host:1:cafe")


@pytest.fixture
def worker() -> None:
    """A worker alive: it wrote its heartbeat just now."""
    assert heartbeat.beat("alive@host", timezone.now(), "worker-host:2:beef")


def delayed(due_in: float) -> TaskRun:
    return TaskRun.objects.create(
        name="echo:payload",
        status=RunStatus.SCHEDULED,
        scheduled_for=timezone.now() + timedelta(seconds=due_in),
    )


def answers(report: queues.Health) -> dict[str, tuple[bool, str]]:
    return {check.name: (check.ok, check.detail) for check in report.checks}


# The function


@pytest.mark.usefixtures("embedded_broker", "leader", "worker")
def test_all_pass() -> None:
    delayed(-30)  # late, but not by a minute
    report = queues.health()
    found = answers(report)
    assert report.ok and report.failed == []
    assert list(found) == list(READINESS)
    assert found["database"][1].startswith("default answered in ")
    assert found["broker"][1].endswith("; default holds 0 message(s)")
    assert found["scheduler"][1].startswith("beat-host:1:cafe leads; its lease runs ")
    assert found["workers"][1] == "1 alive: alive@host"
    assert found["consumers"][1].startswith("every queue holding messages is consumed (0 of ")
    assert found["delayed"][1] == "none overdue by more than 60 s; 1 waiting"
    assert report.as_json()["checks"][0] == {
        "name": "database",
        "ok": True,
        "detail": found["database"][1],
    }


def test_an_unreachable_broker_fails_at_once_and_names_no_password() -> None:
    app = make_app("away", UNREACHABLE)
    with current(app):
        started = time.monotonic()
        report = queues.health(LIVENESS)
        took = time.monotonic() - started
    app.close()
    found = answers(report)
    assert found["database"][0] and not report.ok and report.failed == ["broker"]
    assert "unreachable" in found["broker"][1] and "127.0.0.1:1" in found["broker"][1]
    assert PASSWORD not in json.dumps(report.as_json())
    assert took < 3  # one attempt: kombu's retries would take 6 s


def test_a_password_in_an_error_is_blanked_out() -> None:
    from taskkit.queues.health import _hidden

    app = make_app("away", UNREACHABLE)
    with current(app):
        text = _hidden(ConnectionError(f"login :{PASSWORD}@127.0.0.1 refused"))
    assert text == "ConnectionError: login :***@127.0.0.1 refused"


def test_a_database_that_cannot_be_opened_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "NAME", "/nonexistent/taskkit/db.sqlite3")
    try:
        report = queues.health(["database", "workers"])
    finally:
        connection.close()
    found = answers(report)
    assert report.failed == ["database", "workers"]
    # SQLite cannot open the file; PostgreSQL has no database so named
    assert found["database"][1].startswith("the database failed: OperationalError: ")
    assert found["workers"][1].startswith("the database failed: OperationalError: ")


def test_no_leader() -> None:
    assert answers(queues.health(["scheduler"]))["scheduler"] == (
        False,
        "no leader: no Beat with taskkit's scheduler holds the lease",
    )


def test_a_leader_whose_lease_expired() -> None:
    SchedulerLease.objects.create(
        name=lease.BEAT, holder="gone:3:dead", expires_at=timezone.now() - timedelta(minutes=5)
    )
    assert answers(queues.health(["scheduler"]))["scheduler"] == (
        False,
        "no leader: the lease of gone:3:dead expired 5 min ago",
    )


def test_no_worker_ever() -> None:
    assert answers(queues.health(["workers"]))["workers"] == (
        False,
        "no live worker: none has written a heartbeat",
    )


def test_a_stale_heartbeat(settings: Any) -> None:
    settings.TASKKIT = {"WORKER_LOST_AFTER": 30.0}
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name="quiet@host", started_at=now, seen_at=now - timedelta(seconds=45), process="h:4:ab"
    )
    assert answers(queues.health(["workers"]))["workers"] == (
        False,
        "no live worker: none seen within 30 s; quiet@host was seen 45 s ago",
    )
    heartbeat.beat("quiet@host", now, "h:4:ab")  # it beats again
    assert queues.health(["workers"]).ok


def test_a_swept_worker_is_named_as_the_last_seen(settings: Any) -> None:
    settings.TASKKIT = {"WORKER_LOST_AFTER": 30.0}
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name="quiet@host", started_at=now, seen_at=now - timedelta(seconds=45)
    )
    heartbeat.sweep()
    assert WorkerHeartbeat.objects.lost().exists()
    assert answers(queues.health(["workers"]))["workers"] == (
        False,
        "no live worker: none seen within 30 s; quiet@host was seen 45 s ago",
    )


def consuming(name: str, *queues: str, seen_ago: float = 0) -> None:
    """A worker's heartbeat, consuming ``queues``, written ``seen_ago`` seconds ago."""
    now = timezone.now() - timedelta(seconds=seen_ago)
    about = About(list(queues), 1, "prefork", "5.7", "1.0")
    WorkerHeartbeat.objects.update_or_create(
        name=name,
        defaults={"started_at": now, "seen_at": now, "process": f"h:{name}", **about.fields()},
    )


@pytest.mark.usefixtures("embedded_broker")
def test_a_queue_with_messages_and_no_live_consumer_fails(settings: Any) -> None:
    settings.TASKKIT = {"WORKER_LOST_AFTER": 30.0}
    for queue in ("default", "default", "reports", "mail"):
        taskkit.enqueue("echo:payload", queue=queue)
    consuming("a@host", "default", "maintenance")
    consuming("b@host", "reports", seen_ago=45)  # lost: consumes nothing now
    assert answers(queues.health(["consumers"]))["consumers"] == (
        False,
        "no live worker consumes mail (1), reports (1)",
    )
    consuming("b@host", "reports", "mail")  # beats again, consuming both
    found = answers(queues.health(["consumers"]))["consumers"]
    assert found[0], found
    assert found[1].startswith("every queue holding messages is consumed (3 of ")


def test_empty_queues_and_the_quarantine_need_no_consumer() -> None:
    lengths = {QUARANTINE: 3, "empty": 0, "busy": 2}
    assert consumers_answer(lengths, {"busy": 1}) == (
        True,
        "every queue holding messages is consumed (1 of 3)",
    )
    assert consumers_answer(lengths, {"busy": 0}) == (False, "no live worker consumes busy (2)")


def test_the_consumers_check_fails_with_its_broker() -> None:
    app = make_app("away", UNREACHABLE)
    with current(app):
        found = answers(queues.health(["consumers"]))["consumers"]
    app.close()
    assert not found[0] and "unreachable" in found[1] and PASSWORD not in found[1]


def test_an_overdue_delayed_run() -> None:
    delayed(-600)
    delayed(-90)
    delayed(3600)
    assert answers(queues.health(["delayed"]))["delayed"] == (
        False,
        "2 delayed run(s) overdue by more than 60 s; the first was due 10 min ago",
    )
    assert queues.health(["delayed"], overdue=900).ok
    assert queues.health(["delayed"], overdue=timedelta(minutes=15)).ok
    assert queues.health(["delayed"], overdue=timedelta.max).ok  # none is due before year 1


@pytest.mark.parametrize(
    ("checks", "message"),
    [
        (["database", "brokr"], "unknown health check 'brokr': choose from database, broker"),
        ([], "choose at least one health check"),
    ],
)
def test_bad_choices(checks: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        queues.health(checks)
    with pytest.raises(ValueError, match="overdue must not be negative"):
        queues.health(overdue=-1)
    with pytest.raises(ValueError, match="longer than a timedelta holds"):
        queues.health(overdue=1e308)


def test_checks_run_in_their_order_once() -> None:
    report = queues.health(["delayed", "database", "delayed"])
    assert [check.name for check in report.checks] == ["database", "delayed"]
    assert [check.name for check in queues.health("database").checks] == ["database"]


# The command


def taskqueue_health(*args: str) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("taskqueue", "health", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


@pytest.mark.usefixtures("embedded_broker", "leader", "worker")
def test_the_command_prints_a_line_per_check_and_exits_0() -> None:
    out, failed = taskqueue_health()
    assert failed is None
    lines = out.splitlines()
    assert [line[:19] for line in lines] == [f"ok   {name:<13} " for name in READINESS]
    assert lines[4] == "ok   workers        1 alive: alive@host"
    assert lines[2] == "ok   broker_memory  filesystem does not tell its memory"


@pytest.mark.usefixtures("embedded_broker", "worker")
def test_the_command_exits_1_naming_what_failed() -> None:
    delayed(-120)
    out, failed = taskqueue_health()
    assert failed is not None and failed.returncode == 1
    assert str(failed) == "Unhealthy: scheduler, delayed."
    assert "FAIL scheduler      no leader: no Beat with taskkit's scheduler holds the lease" in out
    assert "FAIL delayed        1 delayed run(s) overdue by more than 60 s" in out
    chosen, passed = taskqueue_health("--check", "workers", "--check", "database")
    assert passed is None
    assert [line[:15] for line in chosen.splitlines()] == ["ok   database  ", "ok   workers   "]
    assert taskqueue_health("--check", "delayed", "--overdue", "5m")[1] is None


@pytest.mark.usefixtures("embedded_broker")
def test_the_command_prints_json() -> None:
    out, failed = taskqueue_health("--check", "broker", "--check", "scheduler", "--json")
    assert failed is not None and failed.returncode == 1
    body = json.loads(out)
    assert body["ok"] is False
    assert [(check["name"], check["ok"]) for check in body["checks"]] == [
        ("broker", True),
        ("scheduler", False),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--check", "beat"], "unknown health check 'beat'"),
        (["--overdue", "soon"], "'soon' is not a duration"),
    ],
)
def test_the_command_exits_2_on_bad_arguments(args: list[str], message: str) -> None:
    out, failed = taskqueue_health(*args)
    assert failed is not None and failed.returncode == 2 and message in str(failed)
    assert out == ""


# The endpoint


@pytest.fixture
def token() -> Iterator[None]:
    with override_settings(TASKKIT={"API_TOKEN": TOKEN}):
        yield


@pytest.mark.usefixtures("embedded_broker", "leader", "worker", "token")
def test_the_endpoint_is_200_when_every_check_passes() -> None:
    response = Client().get("/_tasks/health", headers=BEARER)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["ok"] is True
    assert [check["name"] for check in body["checks"]] == list(READINESS)
    assert body["checks"][4] == {"name": "workers", "ok": True, "detail": "1 alive: alive@host"}
    assert Client().head("/_tasks/health", headers=BEARER).status_code == 200


@pytest.mark.usefixtures("embedded_broker", "worker", "token")
def test_the_endpoint_is_503_when_a_check_fails_and_checks_what_it_is_asked() -> None:
    failing = Client().get("/_tasks/health", headers=BEARER)
    assert failing.status_code == 503
    assert failing.json()["ok"] is False
    assert {check["name"]: check["ok"] for check in failing.json()["checks"]} == {
        "database": True,
        "broker": True,
        "broker_memory": True,
        "scheduler": False,
        "workers": True,
        "consumers": True,
        "delayed": True,
    }
    live = Client().get("/_tasks/health?check=database&check=broker", headers=BEARER)
    assert live.status_code == 200
    assert [check["name"] for check in live.json()["checks"]] == ["database", "broker"]
    bad = Client().get("/_tasks/health?check=beat", headers=BEARER)
    assert bad.status_code == 400
    assert bad.json() == {
        "error": "unknown health check 'beat': choose from database, broker, broker_memory, "
        "scheduler, workers, consumers, delayed"
    }


@pytest.mark.usefixtures("token")
def test_the_endpoint_says_the_broker_is_unreachable_without_its_password() -> None:
    app = make_app("away", UNREACHABLE)
    with current(app):
        response = Client().get("/_tasks/health?check=broker", headers=BEARER)
    app.close()
    assert response.status_code == 503
    assert "unreachable" in response.json()["checks"][0]["detail"]
    assert PASSWORD not in response.content.decode()


@pytest.mark.usefixtures("embedded_broker")
def test_the_endpoint_refuses_callers_the_api_refuses() -> None:
    anonymous = Client().get("/_tasks/health")
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Bearer"
    assert Client().get("/_tasks/health", headers=BEARER).status_code == 401  # no token set
    assert staff("nobody").get("/_tasks/health").status_code == 403
    viewer = staff("viewer", "view_dashboard").get("/_tasks/health?check=database")
    assert viewer.status_code == 200 and "detail" in viewer.json()["checks"][0]


@pytest.mark.usefixtures("embedded_broker", "leader", "worker")
def test_public_mode_answers_anyone_without_details() -> None:
    with override_settings(TASKKIT={"HEALTH_PUBLIC": True, "API_TOKEN": TOKEN}):
        anonymous = Client().get("/_tasks/health")
        assert anonymous.status_code == 200
        assert anonymous.json()["checks"][0] == {"name": "database", "ok": True}
        detailed = Client().get("/_tasks/health", headers=BEARER).json()
        assert detailed["checks"][0]["detail"].startswith("default answered in ")
        SchedulerLease.objects.all().delete()
        assert Client().get("/_tasks/health").status_code == 503
        assert Client().get("/_tasks/health?check=database").status_code == 200
        assert Client().get("/_tasks/").status_code == 401  # the rest of the API stays closed


@pytest.mark.usefixtures("token")
def test_other_methods_are_405_unless_a_task_is_named_health(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = Client().post("/_tasks/health", headers=BEARER)
    assert refused.status_code == 405 and refused["Allow"] == "GET, HEAD"
    assert Client().post("/_tasks/health").status_code == 401
    checkup = taskkit.task(name="health")(lambda event: "ran")
    monkeypatch.setitem(taskkit.registry.current().tasks, "health", checkup)
    ran = Client().post("/_tasks/health", "{}", "application/json", headers=BEARER)
    assert ran.status_code == 200 and ran.json() == {"result": "ran"}


@pytest.mark.parametrize(
    ("value", "valid"), [(True, True), (False, True), ("yes", False), (1, False)]
)
def test_the_public_setting_is_checked(value: Any, valid: bool) -> None:
    with override_settings(TASKKIT={"HEALTH_PUBLIC": value}):
        errors = [e for e in check_taskkit() if "HEALTH_PUBLIC" in e.msg]
    assert not errors if valid else errors[0].id == "taskkit.E019"
