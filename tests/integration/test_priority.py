"""Django task priorities on the real brokers: the urgent run is taken first.

No worker takes these queues: each test reads its queue back with ``basic_get``,
which takes messages in the order a worker would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from tests.apps.single import jobs

from .conftest import BROKERS, TESTED, current, make_app

pytestmark = pytest.mark.django_db(transaction=True)
#: Celery settings a project sets for priorities both ways around its default.
SETTINGS = {
    "redis": {"task_default_priority": 5},
    "rabbitmq": {"task_default_priority": 5, "task_queue_max_priority": 10},
}


@pytest.fixture(params=[name for name in TESTED if name in SETTINGS])
def app(request: pytest.FixtureRequest) -> Iterator[Celery]:
    app = make_app(f"priority-{request.param}", BROKERS[request.param], **SETTINGS[request.param])
    with current(app):
        yield app
    app.close()


def taken_in_order(app: Celery, queue: str) -> list[str]:
    """The run ids of ``queue``'s messages, taken one by one as a worker takes them."""
    taken = []
    with app.connection_for_read() as connection:
        channel: Any = connection.default_channel  # kombu's stubs: no basic_get
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            taken.append(str(message.headers["id"]))
        channel.queue_delete(queue)
    return taken


def test_a_higher_django_priority_is_taken_first(app: Celery) -> None:
    queue = f"priority-{uuid.uuid4().hex[:8]}"
    ordered = jobs.add.using(queue_name=queue)
    low = ordered.using(priority=-100).enqueue(1, 1)
    plain = ordered.enqueue(2, 2)
    high = ordered.using(priority=100).enqueue(3, 3)
    assert taken_in_order(app, queue) == [high.id, plain.id, low.id]
