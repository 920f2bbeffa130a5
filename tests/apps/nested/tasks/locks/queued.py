from taskkit import TaskEvent, task


@task(description="Enqueued once while queued", locks="queue_lock")
def run(event: TaskEvent) -> dict[str, object]:
    return dict(event.payload)
