"""The worker's event loop wakes every second, so a stop (``SIGTERM``) begins at once.

A Celery worker's hub sleeps until its next timer, up to 10 s: on RabbitMQ, whose
connection is quiet between messages and whose heartbeat check is a minute away, a
worker told to stop went on sleeping that long.
"""

from __future__ import annotations

from typing import Any

import pytest
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.asynchronous import Hub
from kombu.asynchronous.timer import Timer

from taskkit.bridge.work.consumer import WAKE_EVERY, Consumer


def test_the_loop_sleeps_at_most_a_second_with_taskkits_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered: list[Any] = []
    monkeypatch.setattr(
        CeleryConsumer, "register_with_event_loop", lambda self, hub: registered.append(hub)
    )
    hub = Hub(timer=Timer(max_interval=10.0))  # as a Celery worker's is
    try:
        hub.call_later(60, lambda: None)  # as the broker heartbeat's check is
        assert hub.fire_timers() == 10  # kombu's longest sleep
        Consumer.__new__(Consumer).register_with_event_loop(hub)
        assert registered == [hub]  # Celery's registrations still happen
        assert hub.fire_timers() <= WAKE_EVERY == 1.0
    finally:
        hub.close()
