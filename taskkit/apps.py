"""The Django app. ``ready()`` discovers tasks, registers the checks and the ``django.tasks``
resolver, and gives Redis URLs taskkit's screening transport; nothing else."""

from __future__ import annotations

from django.apps import AppConfig


class TaskkitConfig(AppConfig):
    name = "taskkit"
    verbose_name = "Tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import bridge, checks, redis_transport, registry  # noqa: F401 - checks register
        from .bridge.send.known_queues import add_source

        redis_transport.install()
        bridge.register(registry.load())
        try:
            from .backends.celery import configured_queues, defined_paths, taskkit_task
        except ImportError:  # neither django.tasks nor the django-tasks backport
            return
        registry.add_resolver(taskkit_task, defined_paths)
        add_source(configured_queues)
