"""``CeleryBackend``: ``django.tasks`` functions run as taskkit tasks on Celery.

A function is a taskkit task named by its module path, made on first use by
:func:`taskkit_task` (the registry's resolver) and always tracked
(``track="all"``), so ``get_result`` reads its run's row at once. Its messages
travel as one shared Celery task (:mod:`taskkit.bridge.carrier`), which every
worker knows without the function having been imported. Deferred runs are rows
the scheduler promotes, never ETA messages.
"""

from __future__ import annotations

import inspect
import re
import socket
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.apps import apps
from django.core import checks
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.module_loading import import_string

from ..bridge import enqueue_task, enqueue_task_at, routed_queue
from ..bridge.carrier import carry
from ..definition import Task as TaskkitTask
from ..definition import TaskEvent, make_task
from ..definition.names import MAX_NAME_LENGTH, validate_queue_name
from ..exceptions import InvalidPayload, PayloadNotJSON, class_path
from ..models import TaskRun
from .compat import (
    DEFAULT_TASK_QUEUE_NAME,
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from .compat import normalize_json as django_json
from .priority import celery_priority
from .results import from_row, make_result


class CeleryBackend(BaseTaskBackend):
    """Runs ``django.tasks`` on Celery workers, with taskkit's run table for results."""

    supports_defer = True  # a delayed row, promoted by taskkit's scheduler
    supports_async_task = True
    supports_get_result = True
    supports_priority = True  # mapped per broker by :func:`~.priority.celery_priority`

    def enqueue(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> TaskResult[Any, Any]:
        self.validate_task(task)
        carried = taskkit_task(task.module_path)
        if carried is None:
            raise InvalidTask(
                f"{task.module_path} must be a module-level task of an installed app, "
                "importable by that path, on a CeleryBackend."
            )
        payload = _payload(args, kwargs)
        queue = _queue(carried, task)
        using = _using(task, queue)
        if using:
            payload["using"] = using
        priority = celery_priority(task.priority)
        if task.run_after is not None:
            handle = enqueue_task_at(carried, task.run_after, payload, queue, priority=priority)
        else:
            handle = enqueue_task(carried, payload, queue, priority=priority)
        # the row's time (track="all": written above), so get_result gives the same one
        stored = TaskRun.objects.filter(pk=handle.id).values_list("created_at", flat=True)
        result = make_result(
            task,
            handle.id,
            TaskResultStatus.READY,
            payload,
            self.alias,
            enqueued_at=stored.first() or timezone.now(),
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def validate_task(self, task: Task[Any, Any]) -> None:
        """Django's checks and taskkit's queue rule; a valid task's path is remembered."""
        super().validate_task(task)
        try:
            validate_queue_name(task.queue_name)
        except ValueError as exc:
            raise InvalidTask(f"{task.module_path}: {exc}") from None
        _defined.add(task.module_path)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """Every name in ``QUEUES`` follows taskkit's queue rule (``taskkit.E030``), and
        taskkit is installed (``taskkit.E032``).

        Django runs this through its own ``django.tasks`` check, so it runs even where
        taskkit's app, which registers taskkit's other checks, is missing.
        """
        errors: list[checks.CheckMessage] = []
        for name in sorted(self.queues, key=str):
            try:
                validate_queue_name(name)
            except ValueError as exc:
                errors.append(
                    checks.Error(
                        f"TASKS[{self.alias!r}]['QUEUES']: {exc}.",
                        hint="Rename the queue; see the queue name rule in taskkit's docs.",
                        id="taskkit.E030",
                    )
                )
        if not apps.is_installed("taskkit"):
            errors.append(
                checks.Error(
                    f"TASKS[{self.alias!r}] uses taskkit.backends.CeleryBackend, but 'taskkit' "
                    "is not in INSTALLED_APPS.",
                    hint="Add 'taskkit' to INSTALLED_APPS: its tables hold the runs, and "
                    "workers find django.tasks functions through it.",
                    id="taskkit.E032",
                )
            )
        return [*super().check(**kwargs), *errors]

    def get_result(self, result_id: str) -> TaskResult[Any, Any]:
        try:
            row = TaskRun.objects.get(pk=result_id)
        except (TaskRun.DoesNotExist, ValidationError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        declared = django_task(row.name)
        if declared is None:
            raise TaskResultDoesNotExist(result_id)
        payload = row.payload if isinstance(row.payload, dict) else {}
        task = enqueued_task(declared, payload, row.queue)
        return from_row(task, row, task.backend)


def configured_queues() -> set[str]:
    """The ``QUEUES`` of every :class:`CeleryBackend` in ``settings.TASKS``: a ``*`` worker
    consumes them (an empty ``QUEUES`` allows any name, and names none)."""
    return {
        str(name)
        for backend in task_backends.all()
        if isinstance(backend, CeleryBackend)
        for name in backend.queues
    }


def _payload(args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The run's payload; an argument JSON cannot carry is Django's ``TypeError``."""
    try:
        return {"args": django_json(list(args)), "kwargs": django_json(dict(kwargs))}
    except TypeError as exc:  # "Unsupported type: …", as Django's own backends say
        raise PayloadNotJSON(str(exc)) from None
    except ValueError as exc:  # bytes that are not UTF-8
        raise InvalidPayload(str(exc)) from None


def _queue(carried: TaskkitTask, task: Task[Any, Any]) -> str:
    """Where the run goes: a ``queue_name`` other than Django's default wins; the default
    yields to ``task_routes`` (matched on the task's path), as a taskkit task's own queue does."""
    if task.queue_name != DEFAULT_TASK_QUEUE_NAME:
        return task.queue_name
    return routed_queue(carried) or task.queue_name


#: What ``Task.using`` may change, kept in the payload's ``using`` when it differs.
USING = ("backend", "priority", "queue_name", "run_after")


def _using(task: Task[Any, Any], queue: str) -> dict[str, Any]:
    """What the enqueued ``task`` changed of the declared one, so get_result and the worker
    rebuild it as enqueued; the queue only when the run's queue does not say it."""
    declared = import_string(task.module_path)
    using: dict[str, Any] = {}
    if task.backend != declared.backend:
        using["backend"] = task.backend
    if task.priority != declared.priority:
        using["priority"] = task.priority
    if task.queue_name != queue:
        using["queue_name"] = task.queue_name
    if task.run_after is not None:
        using["run_after"] = task.run_after.isoformat()
    return using


def _options(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``Task.using`` keyword arguments from a payload's ``using`` (ValueError if malformed)."""
    using = payload.get("using", {})
    if not isinstance(using, dict) or not set(using) <= set(USING):
        raise ValueError(f"a django.tasks payload's using takes only {', '.join(USING)}")
    options = dict(using)
    if "run_after" in options:
        options["run_after"] = datetime.fromisoformat(str(options["run_after"]))
    return options


def enqueued_task(
    declared: Task[Any, Any], payload: Mapping[str, Any], queue: str | None = None
) -> Task[Any, Any]:
    """The task as it was enqueued: ``declared`` with the run's ``using`` and queue.

    A backend or queue since removed from ``TASKS`` leaves the declared value.
    """
    options = _options(payload)
    if queue is not None:
        options.setdefault("queue_name", queue)
    try:
        return declared.using(**options)
    except Exception:  # InvalidTask, InvalidTaskBackend: settings changed since
        return declared.using(backend=options["backend"]) if "backend" in options else declared


#: The paths of the tasks defined on a CeleryBackend in this process (their modules imported).
_defined: set[str] = set()


def defined_paths() -> list[str]:
    """The paths of the ``django.tasks`` tasks defined so far on a :class:`CeleryBackend`."""
    return sorted(_defined)


def django_task(path: str) -> Task[Any, Any] | None:
    """The ``django.tasks`` task at ``path`` in an installed app, as declared.

    Only modules of installed apps are imported: a name from a message or a URL
    never makes taskkit import an arbitrary module. The task may be declared on
    another backend: ``task.using(backend=…)`` sends it to a :class:`CeleryBackend`
    (the payload's ``using`` says which).
    """
    module = path.rpartition(".")[0]
    if not module or apps.get_containing_app_config(module) is None:
        return None
    try:
        target = import_string(path)
    except Exception:  # ImportError, a module that fails
        return None
    return target if isinstance(target, Task) else None


def celery_task(declared: Task[Any, Any], payload: Mapping[str, Any]) -> Task[Any, Any]:
    """The task a payload runs: ``declared`` as enqueued, on a :class:`CeleryBackend`
    (ValueError if its backend is another, or unknown)."""
    task = enqueued_task(declared, payload)
    try:
        backend = task.get_backend()
    except Exception as exc:  # InvalidTaskBackend: no such alias
        raise ValueError(str(exc)) from None
    if not isinstance(backend, CeleryBackend):
        raise ValueError(
            f"{declared.module_path} is on backend {task.backend!r}, not a CeleryBackend: "
            f"enqueue it with .using(backend=…) naming one"
        )
    return task


#: The taskkit task made for each ``django.tasks`` path found: one per real task, so the
#: dict is bounded by the code. Misses are not kept: any name can be asked for (a URL, a
#: message), and keeping each unknown one grew a web process for good.
_made: dict[str, TaskkitTask] = {}

#: A ``django.tasks`` path: dotted identifiers, as long as a task name may be.
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def taskkit_task(path: str) -> TaskkitTask | None:
    """The taskkit task that runs the ``django.tasks`` function at ``path``."""
    made = _made.get(path)
    if made is not None:
        return made
    if len(path) > MAX_NAME_LENGTH or not _PATH.fullmatch(path):
        return None
    task = django_task(path)
    if task is None:
        return None
    description = (task.func.__doc__ or "").strip().split("\n", 1)[0]
    made = make_task(
        _runner(path),
        task.func.__module__,
        name=path,
        description=description,
        queue=task.queue_name,
        track="all",
        schema=_arguments(path),
    )
    carry(path)
    return _made.setdefault(path, made)


def _arguments(path: str) -> Callable[[dict[str, Any]], None]:
    def check(payload: dict[str, Any]) -> None:
        """``{"args": [...], "kwargs": {...}}`` (and ``using``) that the function accepts
        on a CeleryBackend (TypeError or ValueError if not).

        Checked where any payload is (the admin's Enqueue form, the HTTP API,
        ``retry_failed``), so a call that cannot work is refused before it is sent.
        """
        args, kwargs = payload.get("args"), payload.get("kwargs")
        shape = set(payload) - {"using"} == {"args", "kwargs"}
        if not (isinstance(args, list) and isinstance(kwargs, dict) and shape):
            raise ValueError('a django.tasks payload is {"args": [...], "kwargs": {...}}')
        declared = django_task(path)
        if declared is not None:
            celery_task(declared, payload)
            context = [None] if declared.takes_context else []
            inspect.signature(declared.func).bind(*context, *args, **kwargs)

    return check


def _runner(path: str) -> Callable[[TaskEvent], Any]:
    def run(event: TaskEvent) -> Any:
        """Call the function with the run's args and kwargs, sending Django's task signals."""
        declared = django_task(path)
        assert declared is not None  # resolved before this run was made
        task = enqueued_task(declared, event.payload, event.context.queue)
        backend = task.get_backend()
        workers = [socket.gethostname()] * event.context.attempt  # Django counts attempts so
        started = make_result(
            task,
            event.context.run_id,
            TaskResultStatus.RUNNING,
            dict(event.payload),
            task.backend,
            started_at=timezone.now(),
            workers=workers,
        )
        task_started.send(type(backend), task_result=started)
        args, kwargs = started.args, started.kwargs
        try:
            if task.takes_context:
                value = task.call(TaskContext(task_result=started), *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
            value = django_json(value)  # Django's rule for return values: TypeError if not JSON
        except BaseException as exc:  # SystemExit too: the worker records it as the failure
            failed = _finished(started, TaskResultStatus.FAILED)
            trace = traceback.format_exc()
            failed.errors.append(TaskError(exception_class_path=class_path(exc), traceback=trace))
            task_finished.send(type(backend), task_result=failed)
            raise
        done = _finished(started, TaskResultStatus.SUCCESSFUL)
        object.__setattr__(done, "_return_value", value)
        task_finished.send(type(backend), task_result=done)
        return value

    return run


def _finished(result: TaskResult[Any, Any], status: TaskResultStatus) -> TaskResult[Any, Any]:
    return make_result(
        result.task,
        result.id,
        status,
        {"args": result.args, "kwargs": result.kwargs},
        result.backend,
        started_at=result.started_at,
        finished_at=timezone.now(),
        workers=list(result.worker_ids),
    )


__all__ = ["CeleryBackend", "defined_paths", "django_task", "enqueued_task", "taskkit_task"]
