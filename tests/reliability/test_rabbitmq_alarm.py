"""RabbitMQ's memory alarm, raised for real on the tests' RabbitMQ (its watermark set
to 1 MB, then set back): RabbitMQ stops reading from publishing connections, so a
publish's confirm never comes. An enqueue fails after taskkit's confirm timeout
instead of waiting for good, its message is not sent again (it is queued once, when
the alarm clears), the ``broker_memory`` check names the alarm meanwhile, and the
next enqueue after the alarm goes through.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connections
from kombu import Connection

import taskkit
from taskkit.bridge.send import publish
from taskkit.queues import health
from taskkit.queues.queued import broker_view
from taskkit.queues.rabbitmq_api import node_memory
from tests.integration.conftest import BROKERS, current, make_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
QUEUE = "alarmed"
#: The longest the alarm may take to go on or off (RabbitMQ looks at its memory every second).
SETTLE = 60


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60
    )
    return done.stdout


def alarmed() -> bool:
    with Connection(BROKERS["rabbitmq"]) as connection:
        found = node_memory(connection)
    assert found is not None, "RabbitMQ's management API did not answer"
    return found.alarm != ""


def settle(on: bool) -> None:
    deadline = time.monotonic() + SETTLE
    while alarmed() is not on:
        assert time.monotonic() < deadline, f"the memory alarm did not go {'on' if on else 'off'}"
        time.sleep(0.2)


@contextmanager
def memory_alarm() -> Iterator[None]:
    """RabbitMQ's memory alarm on, then its watermark set back as it was."""
    was = rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().").strip()
    absolute = re.fullmatch(r"\{absolute,\s*(\d+)\}", was)
    back = ["absolute", absolute.group(1)] if absolute else [str(float(was))]
    rabbitmqctl("set_vm_memory_high_watermark", "absolute", "1MB")
    try:
        settle(on=True)
        yield
    finally:
        rabbitmqctl("set_vm_memory_high_watermark", *back)
        settle(on=False)


def queued() -> int:
    with broker_view() as broker:
        return broker.length(QUEUE)


def test_an_enqueue_during_a_memory_alarm_fails_and_is_queued_once_when_it_clears(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publish, "CONFIRM_TIMEOUT", 2.0)
    app = make_app("alarm", BROKERS["rabbitmq"])
    errors: list[BaseException] = []

    def enqueue() -> None:
        try:
            taskkit.enqueue("echo:payload", {"n": "during the alarm"}, queue=QUEUE)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's own

    with current(app):
        with broker_view() as broker:
            broker.purge(QUEUE)
        taskkit.enqueue("echo:payload", {"n": "before"}, queue=QUEUE)  # a publishing connection
        with memory_alarm():
            (check,) = health(["broker_memory"]).checks
            assert not check.ok and check.detail.startswith("memory alarm on "), check
            sender = threading.Thread(target=enqueue, daemon=True)
            sender.start()
            sender.join(SETTLE)
            assert not sender.is_alive(), "the enqueue waits for the broker's ack for good"
        (error,) = errors
        assert isinstance(error, taskkit.BrokerUnavailable), error
        assert "did not acknowledge the message within 2 s" in str(error)
        assert "it is not sent again" in str(error)
        deadline = time.monotonic() + SETTLE
        while queued() < 2:  # RabbitMQ reads what it left unread once the alarm clears
            assert time.monotonic() < deadline, queued()
            time.sleep(0.2)
        taskkit.enqueue("echo:payload", {"n": "after"}, queue=QUEUE)
        time.sleep(1)
        assert queued() == 3  # before, during (once, not again), after
        with broker_view() as broker:
            broker.purge(QUEUE)
    app.close()
