import os
import time

import redis

from taskkit import TaskEvent, task

from ..echo.count import COUNTS_URL


def _slow(event: TaskEvent) -> None:
    """Record the start (with the pid to kill), wait, record the end, in the payload's list."""
    client = redis.Redis.from_url(COUNTS_URL)
    try:
        key = str(event.payload["key"])
        client.rpush(key, f"start {event.context.run_id} {os.getpid()}")
        time.sleep(float(event.payload["seconds"]))
        client.rpush(key, f"done {event.context.run_id}")
    finally:
        client.close()


idempotent = task(
    name="crash:idempotent",
    description="Slow; idempotent, so run again if its worker process dies",
    idempotent=True,
)(_slow)
plain = task(name="crash:plain", description="Slow; not idempotent: lost with its worker")(_slow)
