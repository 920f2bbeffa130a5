"""``TaskMeta``: everything taskkit needs to know about a task besides its code.

Fields that later layers act on (queue, schedules, retries, locks, tracking)
are validated here, once, when the task is defined.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from .cron import normalize_cron
from .names import validate_name, validate_queue_name
from .schedules import describe_schedule

if TYPE_CHECKING:
    from .event import TaskEvent

#: A payload schema: field name -> required type(s), or a callable that raises on a bad payload.
PayloadSchema: TypeAlias = Mapping[str, type | tuple[type, ...]] | Callable[[dict[str, Any]], Any]
#: ``single_flight``'s value that shares queued runs across workers as well.
CLUSTER = "cluster"
SingleFlightOption: TypeAlias = bool | Literal["cluster"]
SuccessHook: TypeAlias = "Callable[[TaskEvent, Any], Any]"
FailureHook: TypeAlias = "Callable[[TaskEvent, BaseException], Any]"


class Scope(StrEnum):
    """Where a queued run executes: on one worker (``any``) or on every worker (``all``)."""

    ANY = "any"
    ALL = "all"


class Track(StrEnum):
    """How much of a task's runs is recorded in the run table."""

    ALL = "all"  # a row from enqueue on (doubles as an outbox)
    RUNS = "runs"  # a row when a worker starts and finishes the run
    FAILURES = "failures"  # a row for failed runs only


class Lock(StrEnum):
    """The resque locks: what may not happen twice at once for one name + payload."""

    QUEUE = "queue_lock"  # enqueueing a run that is already queued is a no-op
    JOB = "job_lock"  # a second run while one runs is re-delayed
    SINGLE_INSTANCE = "single_instance"  # one running instance cluster-wide, any payload


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often a failing run is tried, and how long to wait between tries."""

    max_attempts: int = 1
    backoff: float = 2.0
    backoff_max: float = 600.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError("retry max_attempts must be an integer >= 1")
        if self.backoff < 0 or self.backoff_max < 0:
            raise ValueError("retry backoff must not be negative")
        if not all(isinstance(e, type) and issubclass(e, BaseException) for e in self.retry_on):
            raise ValueError("retry_on must hold exception classes")

    def should_retry(self, attempt: int, error: BaseException) -> bool:
        """Whether a run that failed on ``attempt`` (1-based) with ``error`` gets another try."""
        return attempt < self.max_attempts and isinstance(error, self.retry_on)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt``: exponential, capped, with equal jitter."""
        ceiling: float = min(self.backoff_max, self.backoff * 2.0 ** (attempt - 1))
        if not self.jitter:
            return ceiling
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def seconds(value: float | timedelta | None, what: str) -> timedelta | None:
    """Turn seconds or a ``timedelta`` into a positive ``timedelta`` (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        raise ValueError(f"{what} is seconds or a timedelta, not {type(value).__name__}")
    delta = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if delta <= timedelta(0):
        raise ValueError(f"{what} must be positive")
    return delta


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskMeta:
    """A task's settings; build it through :func:`taskkit.task`, which normalises the values."""

    name: str | None = None
    description: str = ""
    queue: str = "default"
    frequency: timedelta | None = None
    cron: str | None = None
    scope: Scope = Scope.ANY
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    locks: frozenset[Lock] = frozenset()
    lock_timeout: timedelta = timedelta(hours=1)
    timeout: timedelta | None = None
    track: Track | None = None
    schema: PayloadSchema | None = None
    on_success: SuccessHook | None = None
    on_failure: FailureHook | None = None
    single_flight: SingleFlightOption = True
    idempotent: bool = False

    def __post_init__(self) -> None:
        if self.name is not None:
            validate_name(self.name)
        validate_queue_name(self.queue)
        if self.scope is Scope.ALL and (self.locks or self.retry.max_attempts > 1):
            raise ValueError(
                "scope='all' runs once on every worker: retries and locks, which are per run, "
                "cannot be used with it"
            )
        self._check_single_flight()
        if self.frequency is not None and self.cron is not None:
            raise ValueError("a task has a frequency or a cron schedule, not both")
        for hook in ("on_success", "on_failure"):
            function = getattr(self, hook)
            if function is not None and not callable(function):
                raise ValueError(f"{hook} must be callable")
            if inspect.iscoroutinefunction(function):
                raise ValueError(f"{hook} must be a plain function, not async def")
        if self.schema is not None and not (
            callable(self.schema) or isinstance(self.schema, Mapping)
        ):
            raise ValueError("schema must be a mapping of field types or a callable validator")

    def _check_single_flight(self) -> None:
        if not isinstance(self.single_flight, bool) and self.single_flight != CLUSTER:
            raise ValueError(f"single_flight is True, False or {CLUSTER!r}")
        if self.single_flight != CLUSTER:
            return
        if self.scope is Scope.ALL:
            raise ValueError("scope='all' runs once on every worker: it cannot share one run")
        if self.track is Track.FAILURES:
            raise ValueError(
                "single_flight='cluster' shares outcomes through the run table: "
                "track='failures' would not record them"
            )

    @property
    def shared_across_workers(self) -> bool:
        """Whether equal queued runs share one execution on the whole cluster."""
        return self.single_flight == CLUSTER

    @property
    def schedule(self) -> str | None:
        """The schedule as a person reads it (``every minute``, ``At 03:00``), else ``None``."""
        return describe_schedule(self.cron, self.frequency) or None


def build_meta(**options: Any) -> TaskMeta:
    """Build a :class:`TaskMeta` from the decorator's friendly values (seconds, strings, ints)."""
    if "frequency" in options:
        options["frequency"] = seconds(options["frequency"], "frequency")
        if options["frequency"] is not None and options["frequency"].total_seconds() % 1:
            raise ValueError("frequency is whole seconds (Beat's interval schedules are)")
    if "timeout" in options:
        options["timeout"] = seconds(options["timeout"], "timeout")
    if "lock_timeout" in options:
        options["lock_timeout"] = seconds(options["lock_timeout"], "lock_timeout")
    if options.get("cron") is not None:
        options["cron"] = normalize_cron(options["cron"])
    if "scope" in options:
        options["scope"] = Scope(options["scope"])
    if options.get("track") is not None:
        options["track"] = Track(options["track"])
    if "locks" in options:
        locks = options["locks"]
        options["locks"] = frozenset(
            Lock(lock) for lock in ([locks] if isinstance(locks, str) else locks)
        )
    retry = options.get("retry")
    if isinstance(retry, int) and not isinstance(retry, bool):
        options["retry"] = RetryPolicy(max_attempts=retry)
    elif isinstance(retry, Mapping):
        options["retry"] = RetryPolicy(**retry)
    elif "retry" in options and not isinstance(retry, RetryPolicy):
        raise ValueError("retry is an attempt count, a dict of RetryPolicy fields or a RetryPolicy")
    return TaskMeta(**options)
