"""reports:build — slow work that reports its progress."""

import time
from typing import Any

from taskkit import TaskEvent, task


@task(description="Build a report slowly, reporting progress", timeout=300)
def run(event: TaskEvent) -> dict[str, Any]:
    steps = int(event.payload.get("steps", 5))
    pause = float(event.payload.get("pause", 0.2))
    for step in range(1, steps + 1):
        time.sleep(pause)
        event.context.set_progress(step, steps)
    return {"steps": steps}
