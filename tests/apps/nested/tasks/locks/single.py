import time

from taskkit import TaskEvent, task


@task(description="One running instance, whatever the payload", locks="single_instance")
def run(event: TaskEvent) -> dict[str, float]:
    start = time.time()
    time.sleep(0.05)
    return {"start": start, "end": time.time()}
