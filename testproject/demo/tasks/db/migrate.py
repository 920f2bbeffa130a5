"""db:migrate — run Django's migrations."""

from typing import Any

from django.core.management import call_command

from taskkit import TaskEvent, task


@task(description="Run database migrations", queue="maintenance")
def run(event: TaskEvent) -> dict[str, Any]:
    call_command("migrate", interactive=False, verbosity=0)
    return {"migrated": True}
