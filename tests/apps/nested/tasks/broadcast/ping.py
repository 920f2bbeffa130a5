from taskkit import TaskEvent, task


@task(description="Runs on every worker", scope="all")
def run(event: TaskEvent) -> str:
    return event.context.run_id
