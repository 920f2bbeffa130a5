"""``RunHandle``: what ``enqueue`` returns, to follow a run and wait for its result."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from ...exceptions import RunCancelled, RunFailed, RunNotFound, RunTimeout
from ...models import RunStatus, TaskRun


def get_run(run_id: object) -> TaskRun:
    """The run record ``run_id``; :class:`~taskkit.RunNotFound` if there is none (yet)."""
    try:
        key = uuid.UUID(str(run_id))
    except ValueError as exc:
        raise RunNotFound(f"{run_id!s} is not a run id (a UUID).") from exc
    try:
        return TaskRun.objects.get(pk=key)
    except TaskRun.DoesNotExist as exc:
        raise RunNotFound(f"No run {key} is recorded.") from exc


@dataclass(frozen=True, slots=True)
class RunHandle:
    """A queued run: its id, and ways to look at it."""

    id: str
    name: str
    queue: str
    #: ``True`` when a ``queue_lock`` made this enqueue a no-op: ``id`` is the queued run's.
    deduplicated: bool = False

    def __str__(self) -> str:
        return self.id

    @property
    def status(self) -> RunStatus | None:
        """The run's status, or ``None`` while no record exists yet."""
        status = TaskRun.objects.filter(pk=self.id).values_list("status", flat=True).first()
        return RunStatus(status) if status else None

    def runs(self) -> list[TaskRun]:
        """For ``scope="all"``: the run of every worker that received the broadcast."""
        return list(TaskRun.objects.filter(group_id=self.id).order_by("started_at"))

    def run(self) -> TaskRun:
        """The run record; :class:`~taskkit.RunNotFound` while there is none.

        Delayed and ``track="all"`` runs have one from enqueue on; others from the
        moment a worker starts them; successful ``track="failures"`` runs never.
        """
        return get_run(self.id)

    def result(self, timeout: float | None = 30.0, poll: float = 0.01) -> Any:
        """Wait for the run to finish and return its result.

        Raises :class:`~taskkit.RunFailed` (with the worker's traceback),
        :class:`~taskkit.RunCancelled`, or :class:`~taskkit.RunTimeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = TaskRun.objects.filter(pk=self.id).first()
            if record is not None and record.finished:
                if record.status == RunStatus.SUCCEEDED:
                    return record.result
                if record.status == RunStatus.CANCELLED:
                    raise RunCancelled(f"Run {self.id} of {self.name!r} was cancelled.")
                raise RunFailed(self.name, self.id, record.error, record.traceback)
            if deadline is not None and time.monotonic() >= deadline:
                state = record.status if record else "not started"
                raise RunTimeout(
                    f"Run {self.id} of {self.name!r} is still {state} after {timeout}s."
                )
            time.sleep(poll)
            poll = min(poll * 1.5, 0.25)
