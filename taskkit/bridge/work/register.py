"""One Celery task per taskkit task, registered under the taskkit name.

Registering through ``shared_task`` puts the tasks on every Celery app, present
and future, so a worker started the plain Celery way knows them all, and Flower,
``celery inspect``, ``task_routes`` and rate limits see ordinary Celery tasks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import Task as CeleryTask
from celery import current_app, shared_task, signals
from celery.exceptions import TimeLimitExceeded

from ... import upstream
from ...definition import Task
from .. import broadcast
from ..carrier import CARRIER
from ..result_backend import default_to_run_table
from . import consumer, exit_deadline, heartbeat, recorder


def _body(self: CeleryTask[Any, Any], *args: Any, **kwargs: Any) -> Any:
    """Any arguments: a message of another shape is recorded as failed, not a ``TypeError``.

    Returns the run's result: Celery hands it to the next step of a chain, logs it and
    sends it with ``task-succeeded``.
    """
    from .run import run_message  # imported late: the worker side needs the models

    return run_message(self, *args, **kwargs)


class BridgeTask(CeleryTask[Any, Any]):
    """The Celery task class of taskkit tasks.

    A run that hits its hard time limit never returns: the prefork pool kills the
    child, and Celery reports it through ``on_failure`` in the worker's main
    process. That is where its row is failed (or its retry scheduled).
    """

    Request = "taskkit.bridge.work.request:GuardedRequest"

    @classmethod
    def on_bound(cls, app: Any) -> None:
        """Every app taskkit's tasks are on reads results from the run table (unless set)."""
        default_to_run_table(app)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, TimeLimitExceeded):
            from .outcome import record_killed

            record_killed(self, task_id, dict(kwargs or {}), exc, str(einfo))


def _worker_lost(
    sender: Any = None,
    task_id: Any = None,
    exception: BaseException | None = None,
    kwargs: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    """A pool process died during a run (killed, out of memory) and the run was not requeued.

    Celery calls no ``on_failure`` then, only this signal, in the worker's main
    process: the run is recorded as failed (or retried), never silently dropped.
    An idempotent task's message is requeued instead, and runs again.
    """
    if isinstance(sender, BridgeTask) and isinstance(exception, WorkerLostError):
        from .outcome import record_killed

        record_killed(sender, str(task_id), dict(kwargs or {}), exception, str(einfo or ""))


def _revoked(sender: Any = None, request: Any = None, terminated: bool = False, **_: Any) -> None:
    """Celery dropped a revoked message (``queues.delete_run`` of a message a worker held),
    or killed its run (``revoke --terminate``): the run is told as cancelled."""
    if isinstance(sender, BridgeTask):
        from .outcome import record_revoked

        record_revoked(sender, request, terminated=bool(terminated))


#: The Celery task attributes of every taskkit task.
COMMON_OPTIONS: dict[str, Any] = {
    "base": BridgeTask,
    "bind": True,
    # results are not ignored: the run table is the result backend (its store a no-op),
    # so task_ignore_result applies; see result_backend.py
    "serializer": "json",
    "max_retries": None,  # Celery's retry only hands a message back (the database away)
}


def celery_options(task: Task) -> dict[str, Any]:
    """The Celery task attributes that follow from a task's meta."""
    options: dict[str, Any] = {
        **COMMON_OPTIONS,
        "name": task.name,
        "acks_late": task.meta.idempotent,
        "reject_on_worker_lost": task.meta.idempotent,
    }
    if task.meta.timeout is not None:
        seconds = task.meta.timeout.total_seconds()
        options["soft_time_limit"] = seconds
        options["time_limit"] = celery_time_limit(seconds)
    return options


def celery_time_limit(timeout: float) -> float:
    """The hard time limit for a task's ``timeout`` (its soft limit): a grace to clean up."""
    return timeout + max(5.0, timeout * 0.1)


def register(tasks: Iterable[Task]) -> None:
    """Make a Celery task for each taskkit task (a name already registered is kept)."""
    default_to_run_table(upstream.current_object(current_app))
    broadcast.connect()
    recorder.connect()
    heartbeat.connect()
    consumer.connect()
    exit_deadline.connect()
    signals.task_failure.connect(_worker_lost, weak=False, dispatch_uid="taskkit.worker_lost")
    signals.task_revoked.connect(_revoked, weak=False, dispatch_uid="taskkit.revoked")
    for task in tasks:
        shared_task(**celery_options(task))(_body)
    # the carried tasks' messages (django.tasks functions); their meta is taskkit's defaults
    shared_task(**{**COMMON_OPTIONS, "name": CARRIER})(_body)
