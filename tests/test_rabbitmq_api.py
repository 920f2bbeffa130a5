"""Where taskkit looks for RabbitMQ's management API, and what it sends there."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from kombu import Connection

from taskkit.checks import check_taskkit
from taskkit.queues.rabbitmq_api import api_base

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
