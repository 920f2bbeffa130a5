"""What a running task receives: ``TaskEvent(name, payload, context)``, and ``previous``
when it is a step of a Celery canvas."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

ProgressReporter = Callable[[int, int], None]

logger = logging.getLogger("taskkit.tasks")


class Source(StrEnum):
    """Where a run was started from."""

    INLINE = "inline"
    WORKER = "worker"
    BEAT = "beat"
    HTTP = "http"
    CLI = "cli"


def _log_progress(done: int, total: int) -> None:
    logger.debug("progress %s/%s", done, total)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskContext:
    """Facts about one run, and the ways a task reports back while it runs."""

    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempt: int = 1
    queue: str = "default"
    source: Source = Source.INLINE
    scheduled_time: datetime | None = None
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger
    progress_reporter: ProgressReporter = _log_progress

    def set_progress(self, done: int, total: int) -> None:
        """Report that ``done`` of ``total`` units of work are finished."""
        if isinstance(done, bool) or isinstance(total, bool):
            raise TypeError("progress is counted in integers")
        if not isinstance(done, int) or not isinstance(total, int):
            raise TypeError("progress is counted in integers")
        if total <= 0 or not 0 <= done <= total:
            raise ValueError(f"progress {done}/{total} is not 0 <= done <= total, total > 0")
        self.progress_reporter(done, total)


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """The one argument of a task's ``run(event)``.

    ``previous`` is what the step before returned, for a step of a Celery chain
    (a list of the results of a chord's header for its body); ``chained`` tells a
    previous result of ``None`` from none at all.
    """

    name: str
    payload: Mapping[str, Any]
    context: TaskContext
    #: The previous step's result, for a step of a Celery chain (see :doc:`/howto/canvas`).
    previous: Any = field(default=None, kw_only=True)
    #: Whether Celery handed this run a previous result (``previous`` may be ``None``).
    chained: bool = field(default=False, kw_only=True)
