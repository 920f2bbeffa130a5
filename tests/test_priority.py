"""Django's task priorities as Celery message priorities, per broker, kept by delayed runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery, current_app
from django.utils import timezone

from taskkit import upstream
from taskkit.backends.priority import celery_priority
from taskkit.models import TaskRun
from taskkit.scheduling import promote_due
from tests.apps.single import jobs

from .conftest import SCRATCH_REDIS_URL as REDIS

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.mark.parametrize(
    ("url", "conf", "expected"),
    [
        # Redis: 0 is taken first, and is where a message without a priority goes
        (REDIS, {}, {100: 0, 50: 0, 0: None, -50: 5, -100: 9}),
        (REDIS, {"task_default_priority": 5}, {100: 0, 50: 3, 1: 5, 0: None, -50: 7, -100: 9}),
        # RabbitMQ: the highest is taken first, up to the queue's x-max-priority
        (RABBITMQ, {}, {100: 9, 50: 5, 0: None, -50: 0, -100: 0}),
        (RABBITMQ, {"task_queue_max_priority": 10, "task_default_priority": 4},
         {100: 10, 50: 7, 0: None, -50: 2, -100: 0}),
        # brokers without priorities: none is sent
        ("filesystem://", {}, {100: None, -100: None}),
        ("memory://", {}, {100: None}),
    ],
)  # fmt: skip
def test_django_priorities_map_onto_the_brokers_order(
    url: str, conf: dict[str, Any], expected: dict[int, int | None]
) -> None:
    app = Celery("priority", broker=url, set_as_current=False)
    app.conf.update(conf)
    assert {p: celery_priority(p, app) for p in expected} == expected


@pytest.fixture
def on_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The project's Celery app says Redis (no message leaves: ``sent`` records them).

    Its pools, built on Redis meanwhile, go too: later tests would send there.
    """
    monkeypatch.setitem(current_app.conf, "broker_url", REDIS)
    monkeypatch.setitem(current_app.conf, "task_default_priority", 5)
    yield
    upstream.drop_connection_pools(current_app)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("on_redis")
def test_a_priority_travels_with_the_message(sent: list[dict[str, Any]]) -> None:
    urgent = jobs.add.using(priority=100).enqueue(1, 2)
    plain = jobs.add.enqueue(3, 4)
    assert [m.get("priority") for m in sent] == [0, None]
    assert urgent.task.priority == 100
    rows = {str(row.pk): row.priority for row in TaskRun.objects.all()}
    assert rows == {urgent.id: 0, plain.id: None}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("on_redis")
def test_a_deferred_run_is_sent_with_its_priority_when_due(sent: list[dict[str, Any]]) -> None:
    due = timezone.now() - timedelta(seconds=1)
    result = jobs.add.using(run_after=due, priority=-100).enqueue(1, 1)
    assert sent == []
    assert TaskRun.objects.get(pk=result.id).priority == 9
    assert promote_due() == 1
    assert [m.get("priority") for m in sent] == [9]
