import time

from taskkit import TaskEvent, task


@task(description="One run per payload at a time", locks=["job_lock"])
def run(event: TaskEvent) -> dict[str, float]:
    start = time.time()
    time.sleep(float(event.payload.get("sleep", 0.05)))
    return {"start": start, "end": time.time()}
