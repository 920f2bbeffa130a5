from typing import Any

from taskkit import TaskEvent, task


class Flaky(RuntimeError):
    pass


@task(
    description="A step of a canvas that fails until an attempt, then adds n like canvas:add",
    retry={"max_attempts": 3, "backoff": 0.2, "jitter": False},
)
def run(event: TaskEvent) -> dict[str, Any]:
    if event.context.attempt < int(event.payload.get("succeed_on", 99)):
        raise Flaky(f"attempt {event.context.attempt} failed")
    previous = event.previous if isinstance(event.previous, dict) else {}
    return {
        "total": int(previous.get("total", 0)) + int(event.payload["n"]),
        "path": [*previous.get("path", []), event.payload["n"]],
        "attempt": event.context.attempt,
    }
