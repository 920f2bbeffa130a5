from taskkit import TaskEvent, task


class Flaky(RuntimeError):
    pass


@task(
    description="Fails until an attempt", retry={"max_attempts": 3, "backoff": 0.2, "jitter": False}
)
def run(event: TaskEvent) -> dict[str, int]:
    if event.context.attempt < int(event.payload.get("succeed_on", 99)):
        raise Flaky(f"attempt {event.context.attempt} failed")
    return {"attempt": event.context.attempt}
