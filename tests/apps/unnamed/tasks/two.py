from taskkit import TaskEvent, task


@task
def one(event: TaskEvent) -> int:
    return 1


@task
def two(event: TaskEvent) -> int:
    return 2
