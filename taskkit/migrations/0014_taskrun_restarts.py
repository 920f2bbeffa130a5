"""The run table counts the restarts of an idempotent run's attempt after a lost worker,
so a run that kills every worker process it starts in is failed, not restarted for ever."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("taskkit", "0013_taskrun_no_redundant_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="taskrun",
            name="restarts",
            field=models.PositiveIntegerField(
                db_default=0,
                default=0,
                help_text="Times this attempt started again after the worker running it was lost.",
                verbose_name="restarts after a lost worker",
            ),
        ),
    ]
