from typing import Any

from taskkit import TaskEvent, task


@task(description="A chord's body: sums the totals of the header's results")
def run(event: TaskEvent) -> dict[str, Any]:
    results = event.previous if isinstance(event.previous, list) else []
    return {"total": sum(int(r["total"]) for r in results), "parts": len(results)}
