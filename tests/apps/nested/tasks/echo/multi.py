"""Several tasks in one module: each has its own name."""

from taskkit import TaskEvent, task


@task(name="echo:first", description="First of two")
def first(event: TaskEvent) -> str:
    return "first"


@task(name="echo:second", description="Second of two")
def second(event: TaskEvent) -> str:
    return "second"
