"""Where taskkit looks for RabbitMQ's management API, and what it sends there."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import override_settings
from kombu import Connection

from taskkit.checks import check_taskkit
from taskkit.queues.brokers.base import BrokerMemory
from taskkit.queues.health import memory_answer
from taskkit.queues.rabbitmq_api import api_base, node_memory
from tests.integration.conftest import BROKERS

BROKER = Connection("amqp://worker:s3cret@rabbit.internal:5672/jobs")


def test_by_default_the_brokers_host_and_credentials() -> None:
    assert api_base(BROKER) == ("http://rabbit.internal:15672", "worker", "s3cret")


def test_a_setting_gives_the_address_and_may_give_credentials() -> None:
    with override_settings(TASKKIT={"RABBITMQ_MANAGEMENT_URL": "https://mq.example/admin/"}):
        assert api_base(BROKER) == ("https://mq.example/admin", "worker", "s3cret")
    url = "http://ops:pw@mq.example:8080/"
    with override_settings(TASKKIT={"RABBITMQ_MANAGEMENT_URL": url}):
        assert api_base(BROKER) == ("http://mq.example:8080", "ops", "pw")  # no password in it


def test_an_empty_setting_turns_it_off() -> None:
    with override_settings(TASKKIT={"RABBITMQ_MANAGEMENT_URL": ""}):
        assert api_base(BROKER) is None


@pytest.mark.parametrize(
    ("value", "valid"),
    [(None, True), ("", True), ("http://h:15672", True), ("ftp://h", False), (15672, False)],
)
def test_the_setting_is_checked(value: Any, valid: bool) -> None:
    with override_settings(TASKKIT={"RABBITMQ_MANAGEMENT_URL": value}):
        errors = [e for e in check_taskkit() if "RABBITMQ_MANAGEMENT_URL" in e.msg]
    assert not errors if valid else errors[0].id == "taskkit.E018"


def test_the_memory_of_the_real_brokers_node() -> None:
    with Connection(BROKERS["rabbitmq"]) as connection:
        found = node_memory(connection)
    assert found is not None, "RabbitMQ's management API did not answer"
    assert 0 < found.used < found.limit and found.alarm == ""
    assert memory_answer("rabbitmq", found)[0]


@pytest.fixture
def api() -> Iterator[dict[str, Any]]:
    """A management API of our own whose ``/api/nodes`` answers what the test puts in
    ``api["nodes"]``."""
    answer: dict[str, Any] = {"nodes": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answer["nodes"]).encode()
            self.send_response(200 if self.path.startswith("/api/nodes?") else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with override_settings(TASKKIT={"RABBITMQ_MANAGEMENT_URL": url}):
            yield answer
    finally:
        server.shutdown()
        server.server_close()


def node(name: str, used: int, limit: int, **alarms: bool) -> dict[str, Any]:
    return {"name": name, "mem_used": used, "mem_limit": limit, **alarms}


def test_a_nodes_alarm_fails_the_check_and_names_the_node(api: dict[str, Any]) -> None:
    api["nodes"] = [node("rabbit@a", 10, 100), node("rabbit@b", 95, 100, disk_free_alarm=True)]
    found = node_memory(BROKER)
    assert found == BrokerMemory(95, 100, "block publishers", "disk alarm on rabbit@b")
    ok, detail = memory_answer("rabbitmq", found)
    assert (
        not ok
        and detail == "disk alarm on rabbit@b: RabbitMQ blocks every publisher until it clears"
    )


@pytest.mark.parametrize("answer", [[], {"error": "x"}, [{"name": "n"}], [None], "text"])
def test_an_answer_without_nodes_is_not_measured(api: dict[str, Any], answer: Any) -> None:
    api["nodes"] = answer
    assert node_memory(BROKER) is None


@pytest.mark.parametrize(
    ("found", "ok", "says"),
    [
        (None, True, "redis does not tell its memory"),
        (BrokerMemory(2**20, 0, "noeviction"), True, "redis uses 1.0 MiB, with no limit"),
        (BrokerMemory(2**20, 2**21, "noeviction"), True, "of its 2.0 MiB limit (50%)"),
        (BrokerMemory(95, 100, "volatile-lru"), False, "(95%): at the limit it takes no new"),
        (BrokerMemory(1, 100, "allkeys-lru"), False, "allkeys-lru evicts keys, queued messages"),
    ],
)
def test_the_memory_check_says_what_a_full_broker_costs(
    found: BrokerMemory | None, ok: bool, says: str
) -> None:
    answer = memory_answer("redis", found)
    assert answer[0] is ok and says in answer[1], answer
