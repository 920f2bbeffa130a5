"""The demo project. Importing the Celery app here is Celery's standard Django layout."""

from .celery import app as celery_app

__all__ = ("celery_app",)
