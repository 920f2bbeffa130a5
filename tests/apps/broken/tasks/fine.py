from taskkit import TaskEvent, task


@task
def run(event: TaskEvent) -> str:
    return "fine"
