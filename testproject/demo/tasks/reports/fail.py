"""reports:fail — always fails, to show what a failure looks like."""

from taskkit import TaskEvent, task


class ReportError(RuntimeError):
    pass


@task(description="Always fails (to show failures)", retry={"max_attempts": 3, "backoff": 1})
def run(event: TaskEvent) -> None:
    raise ReportError(f"the report for {event.payload.get('month', 'this month')} is broken")
