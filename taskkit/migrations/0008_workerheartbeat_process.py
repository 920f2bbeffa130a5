from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("taskkit", "0007_worker_heartbeat"),
    ]

    operations = [
        migrations.AddField(
            model_name="workerheartbeat",
            name="process",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
    ]
