"""Find tasks: import every module of every installed app's tasks package.

Import errors are collected with the module's path instead of being raised one
by one, so a single ``manage.py check`` reports every broken module at once.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType

from django.apps import AppConfig

from ..definition import Task


@dataclass(frozen=True, slots=True)
class ImportProblem:
    """A tasks module that could not be imported."""

    module: str
    path: str
    error: str
    traceback: str


@dataclass(slots=True)
class Discovery:
    """What discovery found: tasks in module order, and the modules that failed."""

    tasks: list[Task] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)


def module_path(name: str) -> str:
    """Best-effort file path of module ``name``, for error messages."""
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None):
        return str(module.__file__)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    return str(spec.origin) if spec is not None and spec.origin else name.replace(".", "/") + ".py"


def tasks_in(module: ModuleType) -> list[Task]:
    """The tasks defined in ``module`` itself (not ones it imported from elsewhere)."""
    return [
        value
        for value in vars(module).values()
        if isinstance(value, Task) and value.module == module.__name__
    ]


def _walk(app: AppConfig, tasks_module: str, found: Discovery) -> Iterator[ModuleType]:
    root = f"{app.name}.{tasks_module}"
    try:
        if importlib.util.find_spec(root) is None:
            return
    except ImportError:
        return  # the app itself is a module without submodules
    names = [root]
    while names:
        name = names.pop(0)
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            found.problems.append(
                ImportProblem(
                    module=name,
                    path=module_path(name),
                    error=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc(),
                )
            )
            continue
        yield module
        if hasattr(module, "__path__"):  # a package: queue its submodules, sorted for stable order
            children = sorted(pkgutil.iter_modules(module.__path__, prefix=name + "."))
            names.extend(info.name for info in children)


def discover(app_configs: Iterable[AppConfig], tasks_module: str) -> Discovery:
    """Import ``<app>.<tasks_module>`` and all its submodules for every app; collect the tasks."""
    found = Discovery()
    for app in app_configs:
        for module in _walk(app, tasks_module, found):
            found.tasks.extend(tasks_in(module))
    return found
