from taskkit import TaskEvent, task


@task(description="Clash from dupes_b")
def run(event: TaskEvent) -> str:
    return "dupes_b"
