from taskkit import TaskEvent, task


@task(description="Recorded only when it fails", track="failures")
def run(event: TaskEvent) -> str:
    if event.payload.get("fail"):
        raise ValueError("asked to fail")
    return "quiet"
