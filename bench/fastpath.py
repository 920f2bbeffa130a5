"""A what-if, not taskkit code: how fast could ``enqueue_many`` be on Redis?

``prototype_enqueue_many`` does what a Redis fast path in taskkit's ``publish``
would: check every payload with taskkit's own ``prepare``, let Celery build the
first message (``as_task_v2``) as a template, copy it per run with the run's id,
kwargs and a precomputed ``kwargsrepr``, and hand the envelopes to Redis in
chunks, one ``LPUSH queue m1 … m1000`` each, over one pipeline.

It is what kombu's Redis channel would have written (same envelope, base64 body,
anonymous direct exchange, ``delivery_tag``), and a worker runs the messages
like any others. What it leaves out, and a real fast path would have to decide
about: Celery's ``before_task_publish``/``after_task_publish`` signals and
``task_routes`` (taskkit resolves the queue itself), priorities (``queue\\x06\\x16N``
lists), kombu's retry policy, queue expiry, and transports other than Redis.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from celery import Celery

from taskkit.bridge.messages import prepare
from taskkit.bridge.publish import resolve_queue
from taskkit.registry import get_task

CHUNK = 1_000
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def prototype_enqueue_many(
    app: Celery, name: str, payloads: Iterable[Mapping[str, Any] | None]
) -> list[str]:
    """Queue one run of ``name`` per payload the fast way; return the run ids."""
    task = get_task(name)
    queue = resolve_queue(task, None)
    runs = [prepare(task, payload, queue) for payload in payloads]
    if not runs:
        return []
    first = runs[0]
    headers, properties, _, _ = app.amqp.as_task_v2(
        first.run_id,
        task.name,
        args=(),
        kwargs=first.kwargs(),
        ignore_result=True,
        reply_to=app.thread_oid,
        argsrepr="()",
        kwargsrepr="",
    )
    shared_properties: dict[str, Any] = {
        **properties,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
    }
    envelopes = []
    for run in runs:
        # Shallow copies: only the top-level fields differ from one run to the next.
        body = json.dumps([[], run.kwargs(), _EMBED], separators=(",", ":"))
        message = {
            "body": base64.b64encode(body.encode()).decode(),
            "headers": {
                **headers,
                "id": run.run_id,
                "root_id": run.run_id,
                "kwargsrepr": f"payload={run.canonical}",
            },
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "properties": {
                **shared_properties,
                "correlation_id": run.run_id,
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        envelopes.append(json.dumps(message))
    with app.producer_or_acquire() as producer:
        producer.maybe_declare(app.amqp.queues[queue])
        client = producer.channel.client
        with client.pipeline(transaction=False) as pipe:
            for start in range(0, len(envelopes), CHUNK):
                pipe.lpush(queue, *envelopes[start : start + CHUNK])
            pipe.execute()
    return [run.run_id for run in runs]
