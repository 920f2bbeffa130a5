from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("taskkit", "0010_schedulerlease_term"),
    ]

    operations = [
        migrations.AddField(
            model_name="workerheartbeat",
            name="reserved_queues",
            field=models.JSONField(blank=True, db_default={}, default=dict),
        ),
    ]
