"""``django.tasks`` on Django 6.0, the ``django-tasks`` backport on Django 5.2: one import."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import django


def invalid_task_class(exceptions: ModuleType) -> type[Exception]:
    """The backport's "invalid task" error, under either of its names.

    django-tasks 0.12 calls it ``InvalidTaskError``; its next release takes
    Django's name, ``InvalidTask`` (and keeps no alias).
    """
    found: Any = getattr(exceptions, "InvalidTask", None) or exceptions.InvalidTaskError
    return found  # type: ignore[no-any-return]


if TYPE_CHECKING or django.VERSION >= (6, 0):
    from django.tasks import DEFAULT_TASK_QUEUE_NAME, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import (
        Task,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
        task,
    )
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
else:  # pragma: no cover - run by the Django 5.2 suite
    from django_tasks import DEFAULT_TASK_QUEUE_NAME, task_backends
    from django_tasks import exceptions as _exceptions
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import (
        Task,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
        task,
    )
    from django_tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json

    InvalidTask = invalid_task_class(_exceptions)

__all__ = [
    "DEFAULT_TASK_QUEUE_NAME",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultMismatch",
    "TaskResultStatus",
    "invalid_task_class",
    "normalize_json",
    "task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
