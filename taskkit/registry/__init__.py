"""The registry layer: discovery and lookup of tasks by name.

The project's registry is built once, when the app is ready; :func:`load`
rebuilds it (tests do, after changing ``INSTALLED_APPS`` or ``TASKKIT``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.apps import AppConfig, apps

from ..conf import settings
from ..definition import Task
from ..exceptions import TaskNotFound
from .discovery import Discovery, ImportProblem, discover
from .registry import Conflict, SettingsProblem, TaskRegistry, build_registry

_registry = TaskRegistry()
#: Turn a name the registry does not hold into a task, or ``None`` (see :func:`add_resolver`).
Resolver = Callable[[str], Task | None]
#: The names a resolver can turn into tasks now, for listings.
Names = Callable[[], Iterable[str]]
_resolvers: dict[Resolver, Names] = {}


def load(app_configs: Iterable[AppConfig] | None = None) -> TaskRegistry:
    """Discover tasks in ``app_configs`` (default: every installed app) and make them current."""
    global _registry
    configs = apps.get_app_configs() if app_configs is None else app_configs
    _registry = build_registry(discover(configs, settings.TASKS_MODULE), settings.TASKS)
    return _registry


def current() -> TaskRegistry:
    """The registry in force."""
    return _registry


def add_resolver(resolver: Resolver, names: Names = tuple) -> None:
    """Let ``resolver`` name tasks that are not discovered (``django.tasks`` functions).

    Asked, in order, for a name the registry does not hold; added once. ``names``
    says which names it knows now, so :func:`all_tasks` lists their tasks too.
    """
    _resolvers.setdefault(resolver, names)


def get_task(name: str) -> Task:
    """The task called ``name``; :class:`~taskkit.TaskNotFound` (with close matches) if none,
    ``TypeError`` if ``name`` is no string."""
    if not isinstance(name, str):
        raise TypeError(f"a task name is a string, not {type(name).__name__}")
    try:
        return _registry.get(name)
    except TaskNotFound:
        for resolver in _resolvers:
            if (found := resolver(name)) is not None:
                return found
        raise


def all_tasks() -> dict[str, Task]:
    """Every task by name, sorted by name: the registry's, then those its resolvers know."""
    found = dict(_registry.tasks)
    for resolver, names in _resolvers.items():
        for name in names():
            if name not in found and (task := resolver(name)) is not None:
                found[name] = task
    return dict(sorted(found.items()))


__all__ = [
    "Conflict",
    "Discovery",
    "ImportProblem",
    "SettingsProblem",
    "TaskRegistry",
    "add_resolver",
    "all_tasks",
    "build_registry",
    "current",
    "discover",
    "get_task",
    "load",
]
