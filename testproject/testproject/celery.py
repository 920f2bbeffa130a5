"""The demo's Celery app, in the standard Django layout.

It respects a ``DJANGO_SETTINGS_MODULE`` that is already set (tests set their own)
and reads every ``CELERY_*`` setting from Django's settings.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

app = Celery("testproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
