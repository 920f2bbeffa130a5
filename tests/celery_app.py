"""The Celery app the test suite's worker subprocesses run (``celery -A tests.celery_app``)."""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")


@worker_init.connect
def shorter_database_wait(**_: object) -> None:
    """``TASKKIT_TEST_DATABASE_WAIT``: the fault tests' database outages outlast a shorter wait."""
    wait = os.environ.get("TASKKIT_TEST_DATABASE_WAIT")
    if wait:
        from taskkit.bridge.work import delivery

        delivery.DATABASE_WAIT = float(wait)
