"""A ``django.tasks`` backend on Celery, through taskkit.

``TASKS = {"default": {"BACKEND": "taskkit.backends.CeleryBackend"}}``. Imported
only where ``django.tasks`` (Django 6.0) or the ``django-tasks`` backport is.
"""

from __future__ import annotations

from .celery import CeleryBackend

__all__ = ["CeleryBackend"]
