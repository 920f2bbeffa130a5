from taskkit import TaskEvent, task


@task(description="Found under a custom TASKS_MODULE")
def run(event: TaskEvent) -> str:
    return "backed up"
