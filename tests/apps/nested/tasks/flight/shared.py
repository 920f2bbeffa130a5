import time

from taskkit import TaskEvent, task
from tests.apps.nested.tasks.echo.count import _counts


@task(
    description="Counts itself and sleeps; equal runs on any workers share one execution",
    single_flight="cluster",
)
def run(event: TaskEvent) -> dict[str, object]:
    """Sleeps ``first`` seconds when it is the first execution counted under ``key``
    (a leader to kill), else ``then``; fails when the payload says ``fail``."""
    executions = _counts().rpush(str(event.payload["key"]), event.context.run_id)
    pause = event.payload.get("first", 1.0) if executions == 1 else event.payload.get("then", 0.5)
    time.sleep(float(pause))
    if event.payload.get("fail"):
        raise ValueError(f"failed in {event.context.run_id}")
    return {"ran": event.context.run_id}
