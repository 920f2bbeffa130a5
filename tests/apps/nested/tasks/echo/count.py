import os
from functools import cache

import redis

from taskkit import TaskEvent, task

#: Where runs count themselves: one Redis list per test, named in the payload.
COUNTS_URL = os.environ.get("TASKKIT_TEST_COUNTS", "redis://127.0.0.1:6379/12")


@cache
def _counts() -> redis.Redis:
    """One client per process (its pool is thread-safe and starts afresh after a fork)."""
    return redis.Redis.from_url(COUNTS_URL)


@task(description="Counts itself: pushes its run id to the Redis list named in the payload")
def run(event: TaskEvent) -> None:
    _counts().rpush(str(event.payload["key"]), event.context.run_id)
