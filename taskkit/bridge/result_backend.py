"""A Celery result backend that reads taskkit's run table, so Celery's tools see taskkit's runs.

``app.AsyncResult(run_id).get()``, ``.status`` and ``.result`` answer from the
row the worker writes anyway: storing is a no-op, there is no second copy of a
result. taskkit makes it the result backend of every Celery app its tasks are on,
unless the project names one (:func:`default_to_run_table`).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from celery import Celery, group, states
from celery.backends.base import BaseBackend
from celery.exceptions import TaskRevokedError
from django.utils import timezone

from ..definition import Source
from ..exceptions import exception_path
from ..models import RunStatus, TaskRun

#: The ``result_backend`` taskkit sets on an app whose settings name none.
BACKEND = f"{__name__}:RunTableBackend"

#: The first pause of a wait: a short run's result comes back at once.
FIRST_POLL = 0.02

#: What a run's status is to Celery. A queued or scheduled run that has failed
#: before is a retry (``RETRY``), see :func:`run_meta`.
STATES = {
    RunStatus.QUEUED: states.PENDING,
    RunStatus.SCHEDULED: states.PENDING,
    RunStatus.RUNNING: states.STARTED,
    RunStatus.SUCCEEDED: states.SUCCESS,
    RunStatus.FAILED: states.FAILURE,
    RunStatus.CANCELLED: states.REVOKED,
}

_FIELDS = (
    "id", "name", "queue", "payload", "status", "attempt", "finished_at",
    "result", "error", "traceback", "worker", "history",
)  # fmt: skip


def recorded_exception(backend: BaseBackend, row: dict[str, Any]) -> BaseException:
    """The exception of a run's last failed attempt, rebuilt from its recorded class and error.

    Celery's own rebuild is used: a class is imported only if its module is, and
    a name that is no exception class is refused; another class stands in for
    one that is not importable here, under the recorded name.
    """
    history = row["history"] if isinstance(row["history"], list) else []
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    path = str(last.get("exception") or exception_path(row["traceback"], row["error"]))
    module, _, name = path.rpartition(".")
    kind, _, message = str(row["error"]).partition(": ")
    exc: BaseException = backend.exception_to_python(
        {"exc_type": name, "exc_module": module or None, "exc_message": (message or kind,)}
    )
    return exc


def run_meta(backend: BaseBackend, task_id: str, row: dict[str, Any] | None) -> dict[str, Any]:
    """Celery's task meta for a run's row (``None``: no row, so ``PENDING``)."""
    meta: dict[str, Any] = {
        "task_id": task_id,
        "status": states.PENDING,
        "result": None,
        "traceback": None,
        "children": [],
        "date_done": None,
    }
    if row is None:
        return meta
    status = STATES[RunStatus(row["status"])]
    retried = status == states.PENDING and bool(row["history"])
    meta.update(
        status=states.RETRY if retried else status,
        date_done=row["finished_at"],
        name=row["name"],
        kwargs={"payload": row["payload"]},
        worker=row["worker"] or None,
        retries=max(int(row["attempt"]) - 1, 0),
        queue=row["queue"],
    )
    if status == states.SUCCESS:
        meta["result"] = row["result"]
    elif status == states.STARTED:
        meta["result"] = {"hostname": row["worker"]}
    elif status == states.REVOKED:
        meta["result"] = TaskRevokedError(row["error"] or "cancelled")
    elif status == states.FAILURE or retried:
        meta["result"] = recorded_exception(backend, row)
        meta["traceback"] = row["traceback"] or None
    return meta


class RunTableBackend(BaseBackend):
    """Celery's view of taskkit's run table: reads rows, never writes them.

    The worker records every run as its track level says; a run without a row
    (not started yet, or a successful ``track="failures"`` run) is ``PENDING``.
    """

    #: Nothing for Celery's nightly ``celery.backend_cleanup`` to expire: the rows are the
    #: project's to prune (see "Run records"), so Beat does not add that task for it.
    supports_autoexpire = True

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        """The worker has recorded the run already: nothing is written twice."""
        return result

    def chord_error_from_stack(self, callback: Any, exc: Exception | None = None) -> Any:
        """Celery fails a chord's body because a header step failed: the body's runs were
        never sent, so they are recorded as failed with that error (nothing waits forever)."""
        error = exc if exc is not None else sys.exc_info()[1]
        info = super().chord_error_from_stack(callback, exc)
        bodies = callback.tasks if isinstance(callback, group) else [callback]
        for body in bodies:
            if error is not None:
                record_unsent(body, error)
        return info

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        try:
            key = uuid.UUID(str(task_id))
        except ValueError:  # no run has such an id
            return run_meta(self, str(task_id), None)
        row = TaskRun.objects.filter(pk=key).values(*_FIELDS).first()
        return run_meta(self, str(task_id), row)

    def wait_for(
        self,
        task_id: str,
        timeout: float | None = None,
        interval: float = 0.5,
        no_ack: bool = True,
        on_interval: Callable[[], Any] | None = None,
    ) -> dict[str, Any]:
        """Poll the row until the run is done: often at first, then every ``interval``
        seconds at most, never past ``timeout`` (Celery's ``TimeoutError``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = min(FIRST_POLL, interval)
        while True:
            meta: dict[str, Any] = self.get_task_meta(task_id)
            if meta["status"] in states.READY_STATES:
                return meta
            if on_interval:
                on_interval()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise self.TimeoutError("The operation timed out.")
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 1.5, interval)

    def as_uri(self, include_password: bool = False) -> str:
        return "taskkit://"


def record_unsent(signature: Any, exc: BaseException) -> None:
    """Record the run a taskkit signature stands for as failed with ``exc``, unless it has a
    row already; a signature of any other Celery task is left alone."""
    kwargs = signature.kwargs if isinstance(signature.kwargs, dict) else {}
    context = kwargs.get("context")
    if not isinstance(context, dict) or not signature.id:
        return
    # Lazily: the worker's modules stay out of web processes, and out of an import cycle.
    from .work.message import row_id
    from .work.outcome import failed_attempt

    TaskRun.objects.get_or_create(
        pk=row_id(str(signature.id)),  # as the worker records a hand-made id
        defaults={
            "name": str(context.get("task") or signature.task),
            "queue": str(context.get("queue") or signature.options.get("queue") or ""),
            "payload": kwargs.get("payload") or {},
            "source": str(context.get("source") or Source.WORKER),
            # Failed for good, as no task is given: its first attempt, error and history.
            **failed_attempt(None, 1, exc, [], timezone.now()),
        },
    )


def _use_run_table(app: Celery) -> None:
    if getattr(app, "backend_cls", None) is None and app.conf.result_backend is None:
        app.conf.result_backend = BACKEND


def default_to_run_table(app: Celery) -> None:
    """Make the run table ``app``'s result backend, unless its settings name one.

    An app read its settings already gets it now; another when it reads them
    (Celery's ``on_after_configure``). Either way before its first result.
    """
    if cast(Any, app).configured:  # public, not in the stubs
        _use_run_table(app)
        return

    def configured(sender: Celery, **kwargs: Any) -> None:
        _use_run_table(sender)

    app.on_after_configure.connect(configured, sender=app, weak=False)
