"""A run's Celery message priority, kept so a delayed run is sent with it when due."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("taskkit", "0005_known_queues_of_stored_runs")]

    operations = [
        migrations.AddField(
            model_name="taskrun",
            name="priority",
            field=models.PositiveSmallIntegerField(blank=True, null=True),
        ),
    ]
