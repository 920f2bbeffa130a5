"""The ``Task`` value and the ``@task`` decorator that makes one.

A task is frozen: ``meta`` plus the user's ``run(event)``. ``using()`` returns a
changed copy, as ``django.tasks`` does, so a module-level task is never mutated.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, overload

from asgiref.sync import sync_to_async

from ..conf import settings
from ..exceptions import InvalidTaskDefinition
from .meta import TaskMeta, build_meta
from .names import derive_name, validate_name

if TYPE_CHECKING:
    from celery import Signature

    from ..bridge import RunHandle
    from .event import TaskContext, TaskEvent

Handler = Callable[["TaskEvent"], Any]
Payload = Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Task:
    """A named task: its :class:`TaskMeta` and the handler that does the work.

    ``handler`` is ``None`` for a task registered in settings whose dotted path
    does not import; running it raises :class:`~taskkit.TaskNotImplemented`.
    """

    name: str
    meta: TaskMeta
    handler: Handler | None
    module: str
    missing_reason: str = ""

    @property
    def description(self) -> str:
        return self.meta.description

    @property
    def queue(self) -> str:
        return self.meta.queue

    @property
    def is_async(self) -> bool:
        """Whether the handler is an ``async def``."""
        return self.handler is not None and inspect.iscoroutinefunction(self.handler)

    def using(self, **changes: Any) -> Task:
        """Return a copy with some meta fields changed, for example ``queue="urgent"``."""
        try:
            meta = build_meta(**{**_explicit_fields(self.meta), **changes})
        except (TypeError, ValueError) as exc:
            raise InvalidTaskDefinition(f"task {self.name!r}: {exc}") from exc
        return dataclasses.replace(self, meta=meta, name=meta.name or self.name)

    def run_inline(
        self,
        payload: Mapping[str, Any] | None = None,
        *,
        context: TaskContext | Mapping[str, Any] | None = None,
    ) -> Any:
        """Run the task in this process and return its result (single-flight applies)."""
        from ..runner import execute  # the runner sits above; the value only hands itself over

        return execute(self, payload, context=context)

    async def arun_inline(
        self,
        payload: Mapping[str, Any] | None = None,
        *,
        context: TaskContext | Mapping[str, Any] | None = None,
    ) -> Any:
        """Async twin of :meth:`run_inline`."""
        from ..runner import aexecute

        return await aexecute(self, payload, context=context)

    def enqueue(self, payload: Payload = None, *, queue: str | None = None) -> RunHandle:
        """Queue one run on Celery (sent after commit inside ``atomic()``); return its handle."""
        from ..bridge import enqueue_task

        return enqueue_task(self, payload, queue)

    def enqueue_many(
        self, payloads: Iterable[Payload], *, queue: str | None = None
    ) -> list[RunHandle]:
        """Queue one run per payload in one batch."""
        from ..bridge import enqueue_many_tasks

        return enqueue_many_tasks(self, payloads, queue)

    def enqueue_at(
        self, when: datetime, payload: Payload = None, *, queue: str | None = None
    ) -> RunHandle:
        """Run at ``when`` (an aware datetime): stored now, sent by the scheduler when due."""
        from ..bridge import enqueue_task_at

        return enqueue_task_at(self, when, payload, queue)

    def enqueue_in(
        self, delay: float | timedelta, payload: Payload = None, *, queue: str | None = None
    ) -> RunHandle:
        """Run after ``delay`` (seconds or a timedelta)."""
        from ..bridge import delay_to_datetime, enqueue_task_at

        return enqueue_task_at(self, delay_to_datetime(delay), payload, queue)

    def signature(
        self,
        payload: Payload = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        immutable: bool = False,
    ) -> Signature[Any]:
        """One run as a Celery signature, a step for ``chain``, ``group`` and ``chord``.

        The payload is checked now; the run id (``signature.id``) is fixed now, so
        a signature is one run: build another for another run. Unless
        ``immutable``, a step of a chain gets the previous result as ``event.previous``.
        """
        from ..bridge import task_signature

        return task_signature(self, payload, queue, immutable=immutable, priority=priority)

    def s(self, payload: Payload = None, *, queue: str | None = None) -> Signature[Any]:
        """Shortcut for :meth:`signature`, as Celery's ``task.s()``."""
        return self.signature(payload, queue=queue)

    def si(self, payload: Payload = None, *, queue: str | None = None) -> Signature[Any]:
        """An immutable :meth:`signature`: the step ignores the previous step's result."""
        return self.signature(payload, queue=queue, immutable=True)

    async def aenqueue(self, payload: Payload = None, *, queue: str | None = None) -> RunHandle:
        """Async twin of :meth:`enqueue`."""
        return await sync_to_async(self.enqueue)(payload, queue=queue)

    async def aenqueue_many(
        self, payloads: Iterable[Payload], *, queue: str | None = None
    ) -> list[RunHandle]:
        """Async twin of :meth:`enqueue_many`."""
        return await sync_to_async(self.enqueue_many)(list(payloads), queue=queue)

    async def aenqueue_at(
        self, when: datetime, payload: Payload = None, *, queue: str | None = None
    ) -> RunHandle:
        """Async twin of :meth:`enqueue_at`."""
        return await sync_to_async(self.enqueue_at)(when, payload, queue=queue)

    async def aenqueue_in(
        self, delay: float | timedelta, payload: Payload = None, *, queue: str | None = None
    ) -> RunHandle:
        """Async twin of :meth:`enqueue_in`."""
        return await sync_to_async(self.enqueue_in)(delay, payload, queue=queue)


def _explicit_fields(meta: TaskMeta) -> dict[str, Any]:
    return {f.name: getattr(meta, f.name) for f in dataclasses.fields(meta)}


def make_task(
    handler: Handler | None, module: str, name: str | None = None, **options: Any
) -> Task:
    """Build a :class:`Task`; raise :class:`InvalidTaskDefinition` for bad options."""
    function = getattr(handler, "__name__", "run")
    label = name or f"{module}.{function}"
    if handler is not None and not callable(handler):
        raise InvalidTaskDefinition(f"task {label!r}: handler must be callable")
    if handler is not None and "description" not in options:
        options["description"] = (inspect.getdoc(handler) or "").split("\n", 1)[0]
    try:
        meta = build_meta(name=name, **options)
        if name is None:
            from django.apps import apps

            app = apps.get_containing_app_config(module) if apps.apps_ready else None
            name = derive_name(module, function, settings.TASKS_MODULE, app.name if app else None)
        validate_name(name)
    except (TypeError, ValueError) as exc:
        raise InvalidTaskDefinition(f"task {label!r}: {exc}") from exc
    return Task(name=name, meta=meta, handler=handler, module=module)


@overload
def task(function: Handler, /) -> Task: ...
@overload
def task(function: None = None, /, **options: Any) -> Callable[[Handler], Task]: ...


def task(function: Handler | None = None, /, **options: Any) -> Task | Callable[[Handler], Task]:
    """Turn ``run(event)`` into a :class:`Task`: bare (``@task``) or with meta (``@task(queue=…)``).

    Options are the fields of :class:`TaskMeta`; ``frequency``, ``timeout`` and
    ``lock_timeout`` also take seconds, ``retry`` an attempt count, ``locks`` names.
    The description defaults to the first line of the docstring.
    """

    def decorate(handler: Handler) -> Task:
        if not callable(handler):
            raise InvalidTaskDefinition(
                f"@task decorates a function, not {handler!r}; pass options as keywords, "
                "for example @task(name='db:migrate')"
            )
        return make_task(handler, handler.__module__, **options)

    return decorate if function is None else decorate(function)
