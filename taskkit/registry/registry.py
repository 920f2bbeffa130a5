"""The task registry: one name, one task; settings entries win over discovered ones.

A registry is built in one go from a discovery and the ``TASKS`` setting and is
never changed afterwards; conflicts are recorded for the system checks.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.utils.module_loading import import_string

from ..definition import Task, make_task
from ..definition.names import MAX_NAME_LENGTH
from ..exceptions import InvalidTaskDefinition, TaskNotFound
from .discovery import Discovery, ImportProblem


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two or more discovered tasks that ended up with one name."""

    name: str
    modules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SettingsProblem:
    """A ``TASKKIT["TASKS"]`` entry that could not be turned into a task."""

    name: str
    error: str


@dataclass(slots=True)
class TaskRegistry:
    """Tasks by name, plus what went wrong while building it."""

    tasks: dict[str, Task] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    import_problems: list[ImportProblem] = field(default_factory=list)
    settings_problems: list[SettingsProblem] = field(default_factory=list)

    def __contains__(self, name: object) -> bool:
        return name in self.tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks.values())

    def __len__(self) -> int:
        return len(self.tasks)

    def get(self, name: str) -> Task:
        """The task called ``name``; :class:`TaskNotFound` with close matches otherwise."""
        try:
            return self.tasks[name]
        except (KeyError, TypeError):
            text = str(name)
            # no suggestion for a name no task can have: difflib's cost grows with its length
            close = (
                difflib.get_close_matches(text, list(self.tasks), n=3, cutoff=0.6)
                if len(text) <= MAX_NAME_LENGTH
                else []
            )
            raise TaskNotFound(text, close) from None


def settings_task(name: str, entry: Mapping[str, Any]) -> Task:
    """Build the task a ``TASKS`` setting entry describes.

    The handler may be a ``@task`` value (its meta is the base, the entry's keys
    override it) or a plain ``run(event)`` function. A handler that does not
    import gives a task without a handler, which runs as ``TaskNotImplemented``.
    """
    if not isinstance(entry, Mapping):
        raise InvalidTaskDefinition(f"TASKS[{name!r}] must be a dict, not {type(entry).__name__}")
    options = dict(entry)
    if "name" in options:
        raise InvalidTaskDefinition(f"TASKS[{name!r}]: the key is the name; remove 'name'")
    path = options.pop("handler", None)
    if not isinstance(path, str) or not path:
        raise InvalidTaskDefinition(f"TASKS[{name!r}] needs a 'handler' dotted path")
    try:
        target = import_string(path)
    except Exception as exc:  # ImportError, or whatever the module raised while importing
        placeholder = make_task(None, path.rpartition(".")[0], name=name, **options)
        return Task(
            name=name,
            meta=placeholder.meta,
            handler=None,
            module=placeholder.module,
            missing_reason=f"cannot import {path!r}: {type(exc).__name__}: {exc}",
        )
    if isinstance(target, Task):
        return target.using(name=name, **options)
    return make_task(target, getattr(target, "__module__", path), name=name, **options)


def build_registry(discovery: Discovery, settings_tasks: Mapping[str, Any]) -> TaskRegistry:
    """Index discovered tasks by name, then lay the settings entries over them."""
    registry = TaskRegistry(import_problems=list(discovery.problems))
    seen: dict[str, list[str]] = {}
    for task in discovery.tasks:
        seen.setdefault(task.name, []).append(task.module)
        registry.tasks.setdefault(task.name, task)
    registry.conflicts.extend(
        Conflict(name, tuple(modules)) for name, modules in seen.items() if len(modules) > 1
    )
    for name, entry in settings_tasks.items():
        try:
            registry.tasks[name] = settings_task(name, entry)
        except InvalidTaskDefinition as exc:
            registry.settings_problems.append(SettingsProblem(name, str(exc)))
    registry.tasks = dict(sorted(registry.tasks.items()))
    return registry
