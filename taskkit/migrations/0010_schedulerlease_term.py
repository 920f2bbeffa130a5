from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("taskkit", "0009_workerheartbeat_worker_list"),
    ]

    operations = [
        migrations.AddField(
            model_name="schedulerlease",
            name="term",
            field=models.PositiveBigIntegerField(db_default=1, default=1),
        ),
    ]
