from typing import Any

from taskkit import TaskEvent, task


@task(description="Pretend to migrate", queue="maintenance")
def run(event: TaskEvent) -> dict[str, Any]:
    return {"migrated": True, "payload": dict(event.payload)}
