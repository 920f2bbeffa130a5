"""The registry layer: discovery and lookup of tasks by name.

The project's registry is built once, when the app is ready; :func:`load`
rebuilds it (tests do, after changing ``INSTALLED_APPS`` or ``TASKKIT``).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.apps import AppConfig, apps

from ..conf import settings
from ..definition import Task
from .discovery import Discovery, ImportProblem, discover
from .registry import Conflict, SettingsProblem, TaskRegistry, build_registry

_registry = TaskRegistry()


def load(app_configs: Iterable[AppConfig] | None = None) -> TaskRegistry:
    """Discover tasks in ``app_configs`` (default: every installed app) and make them current."""
    global _registry
    configs = apps.get_app_configs() if app_configs is None else app_configs
    _registry = build_registry(discover(configs, settings.TASKS_MODULE), settings.TASKS)
    return _registry


def current() -> TaskRegistry:
    """The registry in force."""
    return _registry


def get_task(name: str) -> Task:
    """The task called ``name``; :class:`~taskkit.TaskNotFound` (with close matches) if none."""
    return _registry.get(name)


def all_tasks() -> dict[str, Task]:
    """Every registered task by name, sorted by name."""
    return dict(_registry.tasks)


__all__ = [
    "Conflict",
    "Discovery",
    "ImportProblem",
    "SettingsProblem",
    "TaskRegistry",
    "all_tasks",
    "build_registry",
    "current",
    "discover",
    "get_task",
    "load",
]
