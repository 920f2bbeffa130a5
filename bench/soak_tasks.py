"""The handler of the soak's tasks (``bench/soak_settings.py`` registers them).

Every run pushes its run id to ``soak:ran:<task name>`` on the soak's private
Redis (``TASKKIT_SOAK_COUNTS``); a periodic tick also pushes its
``scheduledTime`` to ``soak:ticks:<task name>``. The soak compares these lists
with its ledger of enqueued run ids.
"""

from __future__ import annotations

import os

import redis

from taskkit import TaskEvent

#: The soak's tasks: enqueued by the soak (normal, delayed, readiness probes) ...
NORMAL, DELAYED, PROBE = "soak:normal", "soak:delayed", "soak:probe"
#: ... and sent by the Beats: every second, and every minute by cron.
PERIODIC_SECOND, PERIODIC_MINUTE = "soak:second", "soak:minute"

_client: redis.Redis | None = None


def client() -> redis.Redis:
    """One client per process on ``TASKKIT_SOAK_COUNTS`` (its pool is thread-safe)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["TASKKIT_SOAK_COUNTS"])
    return _client


def ran_key(name: str) -> str:
    return f"soak:ran:{name}"


def ticks_key(name: str) -> str:
    return f"soak:ticks:{name}"


def record(event: TaskEvent) -> None:
    """Count this run (and its tick) as done."""
    with client().pipeline(transaction=True) as pipe:
        pipe.rpush(ran_key(event.name), event.context.run_id)
        if "scheduledTime" in event.payload:
            pipe.rpush(ticks_key(event.name), str(event.payload["scheduledTime"]))
        pipe.execute()
