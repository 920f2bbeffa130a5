"""``GET /_tasks/metrics``: every metric read back through Prometheus' own parser."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.db import OperationalError, connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import taskkit
from taskkit.bridge.work import heartbeat
from taskkit.bridge.work.about import About
from taskkit.checks import check_taskkit
from taskkit.models import RunStatus, TaskRun, WorkerHeartbeat
from taskkit.queues import metrics
from taskkit.queues.brokers.base import BrokerMemory
from taskkit.queues.health import memory_answer
from taskkit.scheduling import lease
from tests.conftest import SCRATCH_REDIS_URL
from tests.integration.conftest import current, make_app
from tests.users import staff

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "m" * 40
BEARER = {"Authorization": f"Bearer {TOKEN}"}
UNREACHABLE = "redis://127.0.0.1:1/0"  # nobody listens
#: The families of counters, named without ``_total`` as the parser names them.
COUNTERS = {"taskkit_scheduler_leader_changes"}


@pytest.fixture(autouse=True)
def broker(embedded_broker: Any) -> Iterator[None]:
    """Every scrape reads a broker: this test's own embedded one, never the machine's."""
    with override_settings(TASKKIT={"API_TOKEN": TOKEN}):
        yield


def scrape(client: Client | None = None, headers: dict[str, str] = BEARER) -> dict[str, float]:
    """Every sample as ``name{label="value",…}`` (labels sorted), parsed by prometheus_client."""
    response = (client or Client()).get("/_tasks/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == metrics.CONTENT_TYPE
    assert response["X-Content-Type-Options"] == "nosniff"
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        assert family.type == ("counter" if family.name in COUNTERS else "gauge"), family.name
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return found


def row(name: str, status: RunStatus, **fields: Any) -> TaskRun:
    return TaskRun.objects.create(name=name, status=status, **fields)


def test_every_metric_is_read_from_the_broker_and_the_tables() -> None:
    now = timezone.now()
    for n in range(3):
        taskkit.enqueue("echo:payload", {"n": n})
    taskkit.enqueue("echo:payload", queue="later")
    for due in (-120, -30, 3600):
        row("echo:payload", RunStatus.SCHEDULED, scheduled_for=now + timedelta(seconds=due))
    row("echo:payload", RunStatus.RUNNING, worker="alive@host")
    row("echo:payload", RunStatus.RUNNING, worker="alive@host")
    row("echo:fail", RunStatus.FAILED)
    row("gone:task", RunStatus.FAILED)  # a task since removed keeps its series
    row("echo:payload", RunStatus.SUCCEEDED)
    about = About(["default", "plain"], 2, "prefork", "5.7", "1.0")
    assert heartbeat.beat("alive@host", now, "worker-host:2:beef", about)
    WorkerHeartbeat.objects.create(
        name="dead@host",
        started_at=now,
        seen_at=now - timedelta(minutes=5),
        process="h:3:ab",
        queues=["later"],  # lost: consumes nothing
    )
    assert lease.hold(lease.BEAT, "old-beat:1:dead", timedelta(seconds=-1))
    assert lease.hold(lease.BEAT, "beat-host:1:cafe")  # took over from the dead one

    found = scrape()

    assert found["taskkit_broker_up"] == 1
    assert found['taskkit_queue_messages{queue="default"}'] == 3
    assert found['taskkit_queue_messages{queue="later"}'] == 1
    assert found['taskkit_queue_messages{queue="plain"}'] == 0  # known from the settings
    assert 0 <= found['taskkit_queue_oldest_message_age_seconds{queue="default"}'] < 60
    assert found['taskkit_queue_oldest_message_age_seconds{queue="plain"}'] == 0
    assert found['taskkit_queue_consumers{queue="default"}'] == 1
    assert found['taskkit_queue_consumers{queue="plain"}'] == 1
    assert found['taskkit_queue_consumers{queue="later"}'] == 0  # its worker is lost
    assert found["taskkit_delayed_runs"] == 3
    assert 120 <= found["taskkit_delayed_overdue_seconds"] < 180
    assert found['taskkit_runs{status="running",task="echo:payload"}'] == 2
    assert found['taskkit_runs{status="failed",task="echo:payload"}'] == 0
    assert found['taskkit_runs{status="failed",task="echo:fail"}'] == 1
    assert found['taskkit_runs{status="failed",task="gone:task"}'] == 1
    assert found['taskkit_runs{status="running",task="db:migrate"}'] == 0  # every task, at 0
    assert not any('status="succeeded"' in key for key in found)
    assert found["taskkit_workers_alive"] == 1
    assert found["taskkit_workers_lost"] == 1
    assert found['taskkit_scheduler_leader{holder="beat-host:1:cafe"}'] == 1
    assert 0 < found["taskkit_scheduler_lease_remaining_seconds"] <= 5
    assert found["taskkit_scheduler_leader_changes_total"] == 1
    assert {key: value for key, value in found.items() if key.startswith("taskkit_up")} == {
        'taskkit_up{check="broker"}': 1,
        'taskkit_up{check="broker_memory"}': 1,
        'taskkit_up{check="database"}': 1,
        'taskkit_up{check="scheduler"}': 1,
        'taskkit_up{check="workers"}': 1,
        'taskkit_up{check="consumers"}': 0,  # later holds a message nobody takes
        'taskkit_up{check="delayed"}': 0,  # due two minutes ago
    }


def test_a_worker_the_leader_swept_is_lost_no_more() -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name="dead@host", started_at=now, seen_at=now - timedelta(minutes=5)
    )
    assert scrape()["taskkit_workers_lost"] == 1
    heartbeat.sweep()  # its row is kept, marked lost
    found = scrape()
    assert found["taskkit_workers_lost"] == found["taskkit_workers_alive"] == 0


def test_every_metric_is_described_even_without_samples() -> None:
    text = Client().get("/_tasks/metrics", headers=BEARER).content.decode()
    families = {family.name for family in text_string_to_metric_families(text)}
    assert families == {name.removesuffix("_total") for name, _, _ in metrics.METRICS}


def test_an_empty_project_reads_zeros() -> None:
    found = scrape()
    assert found["taskkit_delayed_runs"] == found["taskkit_delayed_overdue_seconds"] == 0
    assert found["taskkit_workers_alive"] == found["taskkit_workers_lost"] == 0
    assert found['taskkit_scheduler_leader{holder=""}'] == 0
    assert found["taskkit_scheduler_lease_remaining_seconds"] == 0
    assert found["taskkit_scheduler_leader_changes_total"] == 0
    assert found['taskkit_up{check="scheduler"}'] == found['taskkit_up{check="workers"}'] == 0
    assert found['taskkit_up{check="consumers"}'] == 1  # no queue holds a message


def test_an_expired_lease_names_its_last_holder_at_0() -> None:
    lease.hold(lease.BEAT, "gone:3:dead", timedelta(seconds=-1))
    found = scrape()
    assert found['taskkit_scheduler_leader{holder="gone:3:dead"}'] == 0
    assert found["taskkit_scheduler_lease_remaining_seconds"] == 0


def test_a_delayed_run_not_due_yet_is_not_overdue() -> None:
    row("echo:payload", RunStatus.SCHEDULED, scheduled_for=timezone.now() + timedelta(hours=1))
    found = scrape()
    assert found["taskkit_delayed_runs"] == 1 and found["taskkit_delayed_overdue_seconds"] == 0


def test_the_run_table_is_read_by_state_never_whole() -> None:
    """Succeeded rows are most of a busy table: no query may read them all."""
    with CaptureQueriesContext(connection) as queries:
        scrape()
    reads = [q["sql"] for q in queries.captured_queries if '"taskkit_taskrun"' in q["sql"]]
    assert len(reads) == 2  # delayed (the health check's too), and running and failed
    assert all('"taskkit_taskrun"."status" ' in sql for sql in reads)
    (grouped,) = [sql for sql in reads if "GROUP BY" in sql]
    assert "IN ('running', 'failed')" in grouped


def test_an_unreachable_broker_leaves_the_queues_out_and_the_rest_in() -> None:
    row("echo:fail", RunStatus.FAILED)
    app = make_app("away", UNREACHABLE)
    with current(app):
        started = time.monotonic()
        found = scrape()
        took = time.monotonic() - started
    app.close()
    assert found["taskkit_broker_up"] == 0 and found['taskkit_up{check="broker"}'] == 0
    assert found['taskkit_up{check="broker_memory"}'] == 0
    assert "taskkit_broker_memory_bytes" not in found
    assert not any(key.startswith("taskkit_queue_") for key in found)
    assert found['taskkit_runs{status="failed",task="echo:fail"}'] == 1
    assert found['taskkit_up{check="database"}'] == 1
    assert took < 3  # one attempt: kombu's retries would take seconds


def test_a_redis_broker_tells_its_memory(scratch_redis: redis.Redis) -> None:
    app = make_app("scratch", SCRATCH_REDIS_URL)
    with current(app):
        found = scrape()
    app.close()
    info = scratch_redis.info("memory")
    assert 0 < found["taskkit_broker_memory_bytes"] < 2 * int(info["used_memory"])
    limit = int(info["maxmemory"])
    assert found["taskkit_broker_memory_limit_bytes"] == limit
    policy = str(info["maxmemory_policy"])
    expected = memory_answer("redis", BrokerMemory(int(info["used_memory"]), limit, policy))
    assert found['taskkit_up{check="broker_memory"}'] == float(expected[0])


def test_a_part_the_database_fails_is_left_out_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(name: str) -> None:
        raise OperationalError("the lease table is locked")

    monkeypatch.setattr(lease, "held", broken)
    with caplog.at_level(logging.WARNING, "taskkit.metrics"):
        found = scrape()
    assert not any(key.startswith("taskkit_scheduler_") for key in found)
    assert found['taskkit_up{check="scheduler"}'] == 0
    assert found["taskkit_workers_alive"] == 0 and found["taskkit_broker_up"] == 1
    assert [r.getMessage() for r in caplog.records if r.name == "taskkit.metrics"] == [
        "metrics: leader left out, the database failed: OperationalError: the lease table is locked"
    ]


def test_registering_the_collector_reads_nothing(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        CollectorRegistry(auto_describe=True).register(metrics.TaskkitCollector())


# Who may scrape


def test_the_api_auth_applies() -> None:
    anonymous = Client().get("/_tasks/metrics")
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Bearer"
    assert (
        Client().get("/_tasks/metrics", headers={"Authorization": "Bearer no"}).status_code == 401
    )
    assert staff("nobody").get("/_tasks/metrics").status_code == 403
    assert "taskkit_broker_up" in scrape(staff("viewer", "view_dashboard"), headers={})


def test_public_mode_lets_scrapers_in_and_keeps_the_rest_closed() -> None:
    with override_settings(TASKKIT={"METRICS_PUBLIC": True}):
        assert scrape(headers={})["taskkit_broker_up"] == 1
        assert Client().head("/_tasks/metrics").status_code == 200
        assert Client().get("/_tasks/").status_code == 401
        assert Client().get("/_tasks/health").status_code == 401


def test_other_methods_are_405_unless_a_task_is_named_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = Client().post("/_tasks/metrics", headers=BEARER)
    assert refused.status_code == 405 and refused["Allow"] == "GET, HEAD"
    assert Client().post("/_tasks/metrics").status_code == 401
    counter = taskkit.task(name="metrics")(lambda event: "ran")
    monkeypatch.setitem(taskkit.registry.current().tasks, "metrics", counter)
    ran = Client().post("/_tasks/metrics", "{}", "application/json", headers=BEARER)
    assert ran.status_code == 200 and ran.json() == {"result": "ran"}


def test_without_prometheus_client_the_endpoint_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "taskkit.queues.metrics")
    response = Client().get("/_tasks/metrics", headers=BEARER)
    assert response.status_code == 501
    assert response.json() == {
        "error": "The metrics need prometheus_client: install django-taskkit[metrics]."
    }
    assert Client().get("/_tasks/metrics").status_code == 401  # refused first, as ever


@pytest.mark.parametrize(
    ("value", "valid"), [(True, True), (False, True), ("yes", False), (1, False)]
)
def test_the_public_setting_is_checked(value: Any, valid: bool) -> None:
    with override_settings(TASKKIT={"METRICS_PUBLIC": value}):
        errors = [e for e in check_taskkit() if "METRICS_PUBLIC" in e.msg]
    assert not errors if valid else errors[0].id == "taskkit.E020"
