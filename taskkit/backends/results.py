"""``TaskResult`` values from taskkit's run table, the one place a run's state lives."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..exceptions import exception_path
from ..models import RunStatus, TaskRun
from .compat import Task, TaskError, TaskResult, TaskResultStatus

#: taskkit's run statuses as Django's: a queued or delayed run (a retry too) is READY.
STATUSES = {
    RunStatus.QUEUED: TaskResultStatus.READY,
    RunStatus.SCHEDULED: TaskResultStatus.READY,
    RunStatus.RUNNING: TaskResultStatus.RUNNING,
    RunStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    RunStatus.FAILED: TaskResultStatus.FAILED,
    RunStatus.CANCELLED: TaskResultStatus.FAILED,
}


def make_result(
    task: Task[Any, Any],
    run_id: str,
    status: TaskResultStatus,
    payload: dict[str, Any],
    backend: str,
    *,
    enqueued_at: datetime | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    errors: list[TaskError] | None = None,
    workers: list[str] | None = None,
    value: Any = None,
) -> TaskResult[Any, Any]:
    result: TaskResult[Any, Any] = TaskResult(
        task=task,
        id=run_id,
        status=status,
        enqueued_at=enqueued_at,
        started_at=started_at,
        finished_at=finished_at,
        last_attempted_at=started_at,
        args=list(payload.get("args", [])),
        kwargs=dict(payload.get("kwargs", {})),
        backend=backend,
        errors=errors or [],
        worker_ids=workers or [],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", value)  # frozen, as Django's backends set it
    return result


def from_row(task: Task[Any, Any], row: TaskRun, backend: str) -> TaskResult[Any, Any]:
    """The result of the run ``row`` of ``task``."""
    status = STATUSES[RunStatus(row.status)]
    errors = [  # one per failed attempt; the latest gets its traceback below
        TaskError(
            exception_class_path=str(
                entry.get("exception") or exception_path("", str(entry.get("error", "")))
            ),
            traceback="",
        )
        for entry in row.history
        if isinstance(entry, dict)
    ]
    if row.status == RunStatus.CANCELLED:
        errors.append(
            TaskError(exception_class_path="taskkit.exceptions.RunCancelled", traceback=row.error)
        )
    elif row.error:
        last = row.history[-1] if row.history else None
        recorded = last.get("exception") if isinstance(last, dict) else None
        path = str(recorded or exception_path(row.traceback, row.error))
        latest = TaskError(exception_class_path=path, traceback=row.traceback)
        errors[-1:] = [latest]
    return make_result(
        task,
        str(row.pk),
        status,
        row.payload if isinstance(row.payload, dict) else {},
        backend,
        enqueued_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        errors=errors,
        workers=[row.worker] * row.attempt if row.worker else [],
        value=row.result,
    )
