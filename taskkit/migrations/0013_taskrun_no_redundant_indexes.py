"""The run table drops its own indexes on ``name`` and ``status``: the composite indexes
that start with either serve the same lookups, and every row written paid for them."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("taskkit", "0012_taskrun_canvas"),
    ]

    operations = [
        migrations.AlterField(
            model_name="taskrun",
            name="name",
            field=models.CharField(max_length=200),
        ),
        migrations.AlterField(
            model_name="taskrun",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("scheduled", "Scheduled"),
                    ("running", "Running"),
                    ("succeeded", "Succeeded"),
                    ("failed", "Failed"),
                    ("cancelled", "Cancelled"),
                ],
                max_length=16,
            ),
        ),
    ]
