import asyncio
from typing import Any

from taskkit import TaskEvent, task


@task(description="An async task")
async def run(event: TaskEvent) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"async": True, "payload": dict(event.payload)}
