from taskkit import TaskEvent, task


class EchoError(RuntimeError):
    pass


@task(description="Always fails")
def run(event: TaskEvent) -> None:
    raise EchoError(f"failed with {dict(event.payload)}")
