import os
import signal
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


@task(
    name="crash:poison",
    description="Idempotent; kills the process it runs in, as a crash in native code would",
    idempotent=True,
    timeout=10,  # under Redis' visibility timeout, or check W002 would warn of it
)
def poison(event: TaskEvent) -> None:
    """Record the start, wait, then SIGKILL this process: a pool process, or a whole worker."""
    client = redis.Redis.from_url(COUNTS_URL)
    try:
        client.rpush(str(event.payload["key"]), f"start {event.context.run_id} {os.getpid()}")
    finally:
        client.close()
    time.sleep(float(event.payload["seconds"]))
    os.kill(os.getpid(), signal.SIGKILL)
