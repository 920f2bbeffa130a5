import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from taskkit import TaskEvent, task


@task(description="Sleeps for payload seconds, under a 2 s time limit", timeout=2)
def run(event: TaskEvent) -> dict[str, Any]:
    seconds = float(event.payload.get("seconds", 0))
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            time.sleep(left)
        except SoftTimeLimitExceeded:
            if not event.payload.get("stubborn"):
                raise
    return {"slept": event.payload.get("seconds", 0)}
