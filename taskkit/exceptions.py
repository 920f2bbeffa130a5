"""Every error taskkit raises on purpose, in one place.

All of them derive from :class:`TaskkitError`, so callers can catch taskkit's
errors without catching the errors of the tasks themselves. Errors that map to
an HTTP status carry it as ``status_code``, the way Nitro's ``runTask`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import exceptions as celery_exceptions


def class_path(error: BaseException | type[BaseException]) -> str:
    """The importable path of an exception's class: ``builtins.ValueError``, ``shop.errors.Late``.

    The one spelling of an exception class taskkit records (run history, the
    ``django.tasks`` results and signals), so a reader can import what it names.
    """
    kind = error if isinstance(error, type) else type(error)
    return f"{kind.__module__}.{kind.__qualname__}"


def exception_path(traceback: str, error: str) -> str:
    """The dotted path of the exception a traceback ends with, spelled as ``class_path`` does.

    For runs recorded before history entries kept ``exception``: Python writes a
    traceback's last line as ``module.Class: message``, leaving the module out
    for built-ins; taskkit's ``error`` (``Class: message``) stands in when there
    is no traceback.
    """
    lines = [line for line in traceback.splitlines() if line and not line[0].isspace()]
    last = lines[-1] if lines else error
    kind = last.split(":", 1)[0].strip() or "Exception"
    if "." in kind:
        return kind
    # taskkit's own refusals (InvalidPayload, TaskNotFound, InvalidMessage…) have no traceback
    own = globals().get(kind)
    if isinstance(own, type) and issubclass(own, BaseException):
        return class_path(own)
    return f"builtins.{kind}"


class TaskkitError(Exception):
    """Base class of every error taskkit raises on purpose."""

    status_code: int = 500


class InvalidTaskDefinition(TaskkitError, ValueError):
    """A ``@task`` decorator or a ``TASKKIT["TASKS"]`` entry is malformed."""


class TaskNotFound(TaskkitError, LookupError):
    """No task of that name is registered (HTTP 404)."""

    status_code = 404

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        message = f"Unknown task {name!r}."
        if self.suggestions:
            message += " Did you mean: " + ", ".join(self.suggestions) + "?"
        super().__init__(message)


class TaskNotImplemented(TaskkitError, NotImplementedError):
    """The task is registered but has no handler that can be imported (HTTP 501)."""

    status_code = 501

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"Task {name!r} has no handler: {reason}")


class TaskNotPeriodic(TaskkitError, ValueError):
    """A recurrent-task operation names a task with no schedule (HTTP 400)."""

    status_code = 400

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"Task {name!r} is not periodic: it has no frequency, no cron and no SCHEDULE entry."
        )


class InvalidPayload(TaskkitError, ValueError):
    """A payload is not a JSON object, is too large or fails the task's schema (HTTP 400)."""

    status_code = 400


class PayloadNotJSON(InvalidPayload, TypeError):
    """A payload holds a value JSON cannot carry (a set, a datetime, an object).

    A ``TypeError`` too, as ``django.tasks`` raises for such an argument, so code
    written for either catches it.
    """


class TaskExited(TaskkitError):
    """A task's own code raised ``SystemExit`` or ``KeyboardInterrupt`` on a worker.

    The run is recorded as failed with that exception; this one is what Celery
    sees instead, so the pool process goes on to its next run.
    """


class RunRevoked(TaskkitError, celery_exceptions.Ignore):
    """Ends the worker's delivery of a run recorded cancelled, as Celery's ``Ignore``:
    Celery stores no result for it, and hears of it as revoked (``task-revoked``)."""


class NotChainable(TaskkitError, ValueError):
    """A task cannot be a step of a Celery canvas (it runs on every worker, ``scope="all"``)."""


class InvalidMessage(TaskkitError, ValueError):
    """A Celery message for a taskkit task does not carry a taskkit run (``celery call`` with
    the task's own arguments, say); its run is recorded as failed."""


class BadRequest(TaskkitError, ValueError):
    """An HTTP API request cannot be read: its body, query or payload (HTTP 400)."""

    status_code = 400


class ResultNotSerializable(TaskkitError, TypeError):
    """A task returned a value that cannot be stored as JSON."""

    def __init__(self, name: str, detail: str) -> None:
        self.name = name
        super().__init__(f"Task {name!r} returned a result that is not JSON-serialisable: {detail}")


class RunNotFound(TaskkitError, LookupError):
    """No run with that id is recorded (HTTP 404)."""

    status_code = 404


class RunFailed(TaskkitError):
    """A queued run failed; carries the worker's error and traceback."""

    def __init__(self, name: str, run_id: str, error: str, traceback: str = "") -> None:
        self.name = name
        self.run_id = run_id
        self.error = error
        self.traceback = traceback
        super().__init__(f"Run {run_id} of {name!r} failed: {error}")


class RunCancelled(TaskkitError):
    """A queued run was cancelled before it ran."""


class RunTimeout(TaskkitError, TimeoutError):
    """A run did not finish within the time its caller was willing to wait."""


class BrokerUnavailable(TaskkitError, ConnectionError):
    """The broker could not be reached (HTTP 503).

    A single enqueue sent nothing; of an ``enqueue_many`` batch, the runs before the
    failure were sent. A ``track="all"`` row stays and the scheduler sends it later.
    """

    status_code = 503


class WorkerLost(TaskkitError):
    """The worker running a run stopped answering: the run's outcome is unknown."""


class UnknownQueue(TaskkitError, LookupError):
    """No queue of that name is known to taskkit or seen on the broker (HTTP 404)."""

    status_code = 404

    def __init__(self, queue: str, known: list[str]) -> None:
        self.queue = queue
        super().__init__(f"Unknown queue {queue!r}. Known queues: {', '.join(known) or 'none'}.")


class QueueNotListable(TaskkitError):
    """The broker cannot show single messages of a queue (HTTP 501)."""

    status_code = 501
