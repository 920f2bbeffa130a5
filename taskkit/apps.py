"""The Django app. ``ready()`` discovers tasks, registers the checks and the ``django.tasks``
resolver, and gives Redis URLs taskkit's screening transport; nothing else."""

from __future__ import annotations

from django.apps import AppConfig


class TaskkitConfig(AppConfig):
    name = "taskkit"
    verbose_name = "Tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import bridge, checks, registry  # noqa: F401 - checks register
        from .bridge.send.known_queues import add_source

        _screen_redis()
        bridge.register(registry.load())
        try:
            from .backends.celery import configured_queues, defined_paths, taskkit_task
        except ImportError:  # neither django.tasks nor the django-tasks backport
            return
        registry.add_resolver(taskkit_task, defined_paths)
        add_source(configured_queues)


def _screen_redis() -> None:
    """Give ``redis://`` URLs taskkit's screening transport if kombu's Redis transport
    imports: without the ``redis`` extra no Redis broker can be used anyway."""
    try:
        from . import redis_transport
    except ModuleNotFoundError:  # redis or packaging, which kombu[redis] brings
        return
    redis_transport.install()
