"""A step of a Celery canvas keeps its previous result and what follows it, for its retry."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("taskkit", "0011_workerheartbeat_reserved_queues")]

    operations = [
        migrations.AddField(
            model_name="taskrun",
            name="canvas",
            field=models.JSONField(blank=True, null=True),
        ),
    ]
