from taskkit import TaskEvent, task


@task(description="Clash from dupes_a")
def run(event: TaskEvent) -> str:
    return "dupes_a"
