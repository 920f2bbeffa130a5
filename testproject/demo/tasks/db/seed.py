"""db:seed — create demo users, idempotently."""

from typing import Any

from django.contrib.auth import get_user_model

from taskkit import TaskEvent, task


@task(description="Create demo users", queue="maintenance")
def run(event: TaskEvent) -> dict[str, Any]:
    count = int(event.payload.get("users", 3))
    model = get_user_model()
    created = 0
    for number in range(1, count + 1):
        _, new = model.objects.get_or_create(username=f"demo{number}")
        created += new
    return {"created": created, "total": model.objects.filter(username__startswith="demo").count()}
