from taskkit import TaskEvent, task


@task(description="Discovered shout (settings replace it)")
def run(event: TaskEvent) -> str:
    return str(event.payload.get("text", "")).upper()
