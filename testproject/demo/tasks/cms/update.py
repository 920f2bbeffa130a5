"""cms:update — a periodic task, every five minutes."""

from typing import Any

from django.utils import timezone

from taskkit import TaskEvent, task


@task(description="Refresh CMS content", cron="*/5 * * * *")
def run(event: TaskEvent) -> dict[str, Any]:
    scheduled = event.context.scheduled_time or timezone.now()
    return {"refreshed_at": scheduled.isoformat()}
