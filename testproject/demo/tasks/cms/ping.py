"""cms:ping — a periodic task on a frequency (every 60 seconds)."""

from taskkit import TaskEvent, task


@task(description="Check the CMS answers", frequency=60)
def run(event: TaskEvent) -> str:
    return "pong"
