from taskkit import TaskEvent, task


@task(description="Reports progress, then echoes the queue it ran on")
def run(event: TaskEvent) -> dict[str, object]:
    steps = int(event.payload.get("steps", 3))
    for step in range(1, steps + 1):
        event.context.set_progress(step, steps)
    return {"queue": event.context.queue, "source": str(event.context.source)}
