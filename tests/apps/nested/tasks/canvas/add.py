from typing import Any

from taskkit import TaskEvent, task

from ..echo.count import _counts


class StepFailed(RuntimeError):
    pass


@task(description="A step of a canvas: adds n to the previous total, keeping the path")
def run(event: TaskEvent) -> dict[str, Any]:
    """Fails while the Redis key ``fail_key`` of the payload exists."""
    if event.payload.get("fail_key") and _counts().exists(str(event.payload["fail_key"])):
        raise StepFailed(f"step {event.payload['n']} fails")
    previous = event.previous if isinstance(event.previous, dict) else {}
    return {
        "total": int(previous.get("total", 0)) + int(event.payload["n"]),
        "path": [*previous.get("path", []), event.payload["n"]],
        "chained": event.chained,
        "previous": event.previous,
    }
