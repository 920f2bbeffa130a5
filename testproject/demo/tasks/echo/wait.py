"""echo:wait — an async task: sleeps without blocking the event loop, then answers."""

import asyncio
from typing import Any

from taskkit import TaskEvent, task


@task(description="Wait a little (async) and return the payload")
async def run(event: TaskEvent) -> dict[str, Any]:
    await asyncio.sleep(float(event.payload.get("seconds", 0.1)))
    return {"waited": event.payload.get("seconds", 0.1), "payload": dict(event.payload)}
