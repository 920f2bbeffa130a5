"""A ``*`` worker's take-up of new queues, with a consumer that records what it is asked."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from taskkit.bridge.work.live_queues import take_up
from taskkit.models import KnownQueue

pytestmark = pytest.mark.django_db


class FakeConsumer:
    """Celery's consumer as the watch uses it: ``call_soon`` runs the callback at once."""

    hostname = "fake@host"

    def __init__(self) -> None:
        self.added: list[str] = []
        self.app = SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from={})))

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        callback(*args)

    def add_task_queue(self, name: str) -> None:
        self.added.append(name)


def test_new_queues_are_asked_for_once_and_reserved_names_never() -> None:
    for name in ("default", "reports-eu", "taskkit.quarantine", "taskkit.broadcast", "x.pidbox"):
        KnownQueue.objects.create(name=name)
    consumer, asked = FakeConsumer(), {"default"}

    assert take_up(consumer, asked) == ["reports-eu"]
    assert consumer.added == ["reports-eu"]

    KnownQueue.objects.create(name="later")
    assert take_up(consumer, asked) == ["later"]
    assert consumer.added == ["reports-eu", "later"]
