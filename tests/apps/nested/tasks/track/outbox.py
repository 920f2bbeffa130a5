from taskkit import TaskEvent, task


@task(description="Recorded from enqueue on", track="all")
def run(event: TaskEvent) -> dict[str, object]:
    return dict(event.payload)
