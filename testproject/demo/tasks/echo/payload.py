"""echo:payload — return the payload it was given (Nitro's example task)."""

from typing import Any

from taskkit import TaskEvent, task


@task(description="Returns the provided payload")
def run(event: TaskEvent) -> dict[str, Any]:
    return dict(event.payload)
