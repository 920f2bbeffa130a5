"""The Celery app of the benchmarks, for the bench process and its worker subprocesses.

Configured like ``tests.celery_app`` (from ``tests.settings``, so the broker is
``TASKKIT_TEST_BROKER``), plus the plain Celery tasks raw Celery is measured with.
taskkit's own tasks (``echo:payload`` …) join every app through ``shared_task``
once Django is set up (Celery's Django fixup does that in the worker).

The raw tasks report to Redis, on the broker's database, so the bench process
can count completions without a result backend.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis
from celery import Celery

from .roundtrips import from_environment

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

#: Redis keys the raw tasks write to.
COUNT_KEY = "bench:count"
PING_KEY = "bench:ping"
LATENCY_KEY = "bench:latency"

app = Celery("taskkit-bench")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(broker_connection_retry_on_startup=False)

from_environment()  # a worker of the scale model counts its round trips

_local = threading.local()


def report_client() -> redis.Redis:
    """A Redis client on the broker's database (one per thread, pooled)."""
    client = getattr(_local, "client", None)
    if client is None:
        url = os.environ.get("TASKKIT_TEST_BROKER", "redis://127.0.0.1:6379/14")
        client = _local.client = redis.Redis.from_url(url)
    return client


@app.task(name="bench.noop", ignore_result=True, serializer="json")
def noop(**payload: Any) -> None:
    """Does nothing: what raw Celery enqueues are measured with."""


@app.task(name="bench.count", ignore_result=True, serializer="json")
def count(**payload: Any) -> dict[str, Any]:
    """Counts itself done (one ``INCR``) and returns its payload, as taskkit's ``echo``
    does (Celery logs a repr of what a task returns): the raw side of the drain rate."""
    report_client().incr(COUNT_KEY)
    return payload


@app.task(name="bench.stamp", ignore_result=True, serializer="json")
def stamp(due: float, **payload: Any) -> None:
    """Record how late it started against its ETA ``due`` (a Unix time), in seconds."""
    report_client().rpush(LATENCY_KEY, repr(time.time() - due))


@app.task(name="bench.ping", ignore_result=True, serializer="json")
def ping(token: str) -> None:
    """Readiness probe: the worker consumes and runs tasks."""
    report_client().sadd(PING_KEY, token)
