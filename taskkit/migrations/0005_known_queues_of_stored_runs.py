"""Known queues no longer come from a scan of the run table: keep those it named."""

from typing import Any

from django.db import migrations


def remember_stored_queues(apps: Any, schema_editor: Any) -> None:
    task_run = apps.get_model("taskkit", "TaskRun")
    known_queue = apps.get_model("taskkit", "KnownQueue")
    names = set(task_run.objects.values_list("queue", flat=True).distinct())
    names -= set(known_queue.objects.values_list("name", flat=True))
    known_queue.objects.bulk_create([known_queue(name=name) for name in sorted(names) if name])


class Migration(migrations.Migration):
    dependencies = [("taskkit", "0004_dashboard_permissions")]

    operations = [migrations.RunPython(remember_stored_queues, migrations.RunPython.noop)]
