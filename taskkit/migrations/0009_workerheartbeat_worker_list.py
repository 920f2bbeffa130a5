from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("taskkit", "0008_workerheartbeat_process"),
    ]

    operations = [
        migrations.AddField(
            model_name="workerheartbeat",
            name="active",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="workerheartbeat",
            name="celery_version",
            field=models.CharField(blank=True, db_default="", default="", max_length=32),
        ),
        migrations.AddField(
            model_name="workerheartbeat",
            name="concurrency",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="workerheartbeat",
            name="lost_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.AddField(
            model_name="workerheartbeat",
            name="pool",
            field=models.CharField(blank=True, db_default="", default="", max_length=100),
        ),
        migrations.AddField(
            model_name="workerheartbeat",
            name="queues",
            field=models.JSONField(blank=True, db_default=[], default=list),
        ),
        migrations.AddField(
            model_name="workerheartbeat",
            name="reserved",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="workerheartbeat",
            name="taskkit_version",
            field=models.CharField(blank=True, db_default="", default="", max_length=32),
        ),
    ]
