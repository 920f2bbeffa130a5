"""Handlers registered through TASKKIT["TASKS"] in the test settings."""

from taskkit import TaskEvent, task


@task(description="Shout, louder (from settings)", queue="loud")
def shout_louder(event: TaskEvent) -> str:
    return str(event.payload.get("text", "")).upper() + "!"


def hello(event: TaskEvent) -> str:
    """Say hello (a plain function registered in settings)."""
    return f"hello {event.payload.get('name', 'world')}"
