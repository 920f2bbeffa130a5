"""An app with a single tasks.py module: tasks are named after their functions."""

from taskkit import TaskEvent, task


@task(description="Named after its function")
def single_ping(event: TaskEvent) -> str:
    return "pong"


@task(name="single:named", description="Named explicitly")
def other(event: TaskEvent) -> str:
    return "named"
