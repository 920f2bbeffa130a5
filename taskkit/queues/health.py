"""Whether taskkit can do its work now: one check per dependency, for probes and operators.

:data:`LIVENESS` is what every process of the project needs: the database
answers, the broker takes a connection. :data:`READINESS` adds what queued
work needs to be done: the broker has room for messages (under
:data:`MEMORY_HIGH` of its memory limit, no alarm, no policy that evicts them),
a leader Beat holds its lease (delayed runs, retries and
periodic ticks are sent), a worker wrote its heartbeat within
``WORKER_LOST_AFTER`` (queued runs are taken), every queue holding messages is
consumed by a live worker (as its heartbeat says), and no delayed run is long
overdue (the leader does send them).

A check never raises: its dependency's failure is its answer, and the text it
gives has every password of the settings blanked out. ``workers`` asks that
one worker is alive; ``consumers`` that no queue with messages waits for a
worker that consumes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from celery import current_app
from django.db import Error as DatabaseError
from django.db import connections, router
from django.db.models import Count, Min, Q
from django.utils import timezone

from .. import times
from ..conf import settings
from ..exceptions import TaskkitError
from ..models import TaskRun, WorkerHeartbeat
from ..quarantine import QUARANTINE
from ..scheduling import lease
from .brokers.base import BrokerMemory
from .queued import _queues, broker_view

#: Every check, in the order they run and are shown.
READINESS = (
    "database",
    "broker",
    "broker_memory",
    "scheduler",
    "workers",
    "consumers",
    "delayed",
)
#: The checks a process needs to serve at all.
LIVENESS = ("database", "broker")
#: A delayed run due longer ago than this is overdue (the ``delayed`` check).
OVERDUE = timedelta(seconds=60)
#: The share of its memory limit a broker may use before ``broker_memory`` fails.
MEMORY_HIGH = 0.9

Probe = Callable[[datetime], tuple[bool, str]]


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One dependency's answer."""

    #: One of :data:`READINESS`.
    name: str
    #: Whether the check passed.
    ok: bool
    #: What the check saw, one line for an operator.
    detail: str


@dataclass(frozen=True, slots=True)
class Health:
    """The checks that ran, in :data:`READINESS` order."""

    checks: tuple[HealthCheck, ...]

    @property
    def ok(self) -> bool:
        """Whether every check passed: the command's exit 0, the endpoint's 200."""
        return all(check.ok for check in self.checks)

    @property
    def failed(self) -> list[str]:
        """The names of the checks that failed."""
        return [check.name for check in self.checks if not check.ok]

    def as_json(self, *, details: bool = True) -> dict[str, Any]:
        """``details=False``: names and outcomes only, for a caller who may see no more."""
        return {
            "ok": self.ok,
            "checks": [
                {"name": check.name, "ok": check.ok} | ({"detail": check.detail} if details else {})
                for check in self.checks
            ],
        }


def health(checks: Iterable[str] | None = None, *, overdue: timedelta | float = OVERDUE) -> Health:
    """Run ``checks`` (names of :data:`READINESS`; ``None``: all of them).

    ``overdue`` (seconds, or a timedelta) is how late a delayed run may be
    before the ``delayed`` check fails. An unknown name is a ``ValueError``.
    """
    wanted = _chosen(checks)
    try:
        late = overdue if isinstance(overdue, timedelta) else timedelta(seconds=overdue)
    except OverflowError:
        raise ValueError(f"overdue is longer than a timedelta holds: {overdue!r} s") from None
    if late < timedelta(0):
        raise ValueError(f"overdue must not be negative, not {late.total_seconds():g} s")
    probes: dict[str, Probe] = {
        "database": _database,
        "broker": _broker,
        "broker_memory": _broker_memory,
        "scheduler": _scheduler,
        "workers": _workers,
        "consumers": _consumers,
        "delayed": lambda now: _delayed(now, late),
    }
    return Health(tuple(_run(name, probes[name]) for name in wanted))


def _chosen(checks: Iterable[str] | None) -> list[str]:
    if checks is None:
        return list(READINESS)
    names = {checks} if isinstance(checks, str) else set(checks)
    if not names:
        raise ValueError("choose at least one health check")
    unknown = sorted(names - set(READINESS))
    if unknown:
        raise ValueError(f"unknown health check {unknown[0]!r}: choose from {', '.join(READINESS)}")
    return [name for name in READINESS if name in names]


def _run(name: str, probe: Probe) -> HealthCheck:
    try:
        ok, detail = probe(timezone.now())  # after a slow broker, not before it
    except DatabaseError as exc:
        ok, detail = False, f"the database failed: {_hidden(exc)}"
    except Exception as exc:  # whatever the broker raised: the check's answer, not a crash
        ok, detail = False, _hidden(exc)
    return HealthCheck(name, ok, detail)


def _database(now: datetime) -> tuple[bool, str]:
    alias = router.db_for_read(TaskRun)
    started = time.monotonic()
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return True, f"{alias} answered in {_ms(started)}"


def _broker(now: datetime) -> tuple[bool, str]:
    queue = str(current_app.conf.task_default_queue or "celery")
    started = time.monotonic()
    with broker_view(retry=False) as broker:
        length = broker.length(queue)
    return True, f"{broker.name} answered in {_ms(started)}; {queue} holds {length} message(s)"


def _broker_memory(now: datetime) -> tuple[bool, str]:
    with broker_view(retry=False) as broker:
        return memory_answer(broker.name, broker.memory())


def memory_answer(name: str, found: BrokerMemory | None) -> tuple[bool, str]:
    """The ``broker_memory`` check: whether the broker has room for the messages to come.

    At its limit Redis refuses every new message (and, with its transactions refused
    too, a worker cannot start or take one, so nothing frees the room); RabbitMQ
    raises an alarm that blocks every publisher. Redis with an ``allkeys-*`` policy
    evicts keys instead, queued messages among them.
    """
    if found is None:
        return True, f"{name} does not tell its memory"
    if found.alarm:
        return False, f"{found.alarm}: RabbitMQ blocks every publisher until it clears"
    if not found.limit:
        return True, f"{name} uses {_mib(found.used)}, with no limit"
    share = found.used / found.limit
    used = f"{name} uses {_mib(found.used)} of its {_mib(found.limit)} limit ({share:.0%})"
    if found.policy.startswith("allkeys"):
        return False, (
            f"{used}; at the limit its maxmemory-policy {found.policy} evicts keys, "
            "queued messages too: set it to noeviction"
        )
    if share >= MEMORY_HIGH:
        return False, f"{used}: at the limit it takes no new message"
    return True, used


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _scheduler(now: datetime) -> tuple[bool, str]:
    return scheduler_answer(lease.held(lease.BEAT), now)


def scheduler_answer(found: tuple[str, datetime] | None, now: datetime) -> tuple[bool, str]:
    """The ``scheduler`` check of the lease's holder and expiry (``None``: nobody holds it)."""
    if found is None:
        return False, "no leader: no Beat with taskkit's scheduler holds the lease"
    holder, expires_at = found
    if expires_at <= now:
        return False, f"no leader: the lease of {holder} expired {_span(now - expires_at)} ago"
    return True, f"{holder} leads; its lease runs {_span(expires_at - now)} more"


def _workers(now: datetime) -> tuple[bool, str]:
    limit = settings.WORKER_LOST_AFTER
    heartbeats = WorkerHeartbeat.objects.order_by("-seen_at")  # lost ones too: the last seen
    cutoff = now - timedelta(seconds=limit)
    alive = sorted(heartbeats.alive(cutoff).values_list("name", flat=True))
    if alive:
        shown = ", ".join(alive[:5]) + (", …" if len(alive) > 5 else "")
        return True, f"{len(alive)} alive: {shown}"
    last = heartbeats.values_list("name", "seen_at").first()
    if last is None:
        return False, "no live worker: none has written a heartbeat"
    name, seen_at = last
    return False, (
        f"no live worker: none seen within {limit:g} s; {name} was seen {_span(now - seen_at)} ago"
    )


def _consumers(now: datetime) -> tuple[bool, str]:
    with broker_view(retry=False) as broker:
        lengths = {queue: broker.length(queue) for queue in _queues(broker)}
    return consumers_answer(lengths, consumed(now))


def consumed(now: datetime) -> dict[str, int]:
    """How many live workers consume each queue, as their heartbeats say."""
    cutoff = now - timedelta(seconds=settings.WORKER_LOST_AFTER)
    counts: dict[str, int] = {}
    for queues in WorkerHeartbeat.objects.alive(cutoff).values_list("queues", flat=True):
        for queue in set(queues or []):
            counts[queue] = counts.get(queue, 0) + 1
    return counts


def consumers_answer(lengths: Mapping[str, int], consumers: Mapping[str, int]) -> tuple[bool, str]:
    """The ``consumers`` check: which queues hold messages that no live worker consumes.

    The quarantine is left out: it holds what no worker can run, for an operator.
    """
    waiting = {queue: n for queue, n in lengths.items() if n and queue != QUARANTINE}
    orphans = sorted(queue for queue in waiting if not consumers.get(queue))
    if orphans:
        shown = ", ".join(f"{queue} ({waiting[queue]})" for queue in orphans)
        return False, f"no live worker consumes {shown}"
    return True, f"every queue holding messages is consumed ({len(waiting)} of {len(lengths)})"


def delayed_found(now: datetime, late: timedelta) -> dict[str, Any]:
    """One aggregate on the index of the due time: ``waiting``, ``overdue`` and ``first``."""
    return TaskRun.objects.scheduled().aggregate(
        waiting=Count("pk"),
        overdue=Count("pk", filter=Q(scheduled_for__lt=times.ago(now, late))),
        first=Min("scheduled_for"),
    )


def _delayed(now: datetime, late: timedelta) -> tuple[bool, str]:
    return delayed_answer(delayed_found(now, late), now, late)


def delayed_answer(found: Mapping[str, Any], now: datetime, late: timedelta) -> tuple[bool, str]:
    """The ``delayed`` check of :func:`delayed_found`'s aggregate."""
    threshold = f"more than {_span(late)}"
    if found["overdue"]:
        return False, (
            f"{found['overdue']} delayed run(s) overdue by {threshold}; the first was due "
            f"{_span(now - found['first'])} ago"
        )
    return True, f"none overdue by {threshold}; {found['waiting']} waiting"


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.1f} ms"


def _span(delta: timedelta) -> str:
    """``42 s``, ``5 min``, ``3 h``, ``2 d``."""
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _hidden(exc: BaseException) -> str:
    """``exc``'s message on one line, with every password of the settings blanked out.

    The errors taskkit raises name no password; this is for the ones it passes on.
    """
    said = str(exc) if isinstance(exc, TaskkitError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(said.split())
    try:
        secrets = _passwords()
    except ValueError:  # a URL too broken to find its password in
        return f"{type(exc).__name__} (its message is withheld: a URL in the settings is malformed)"
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _passwords() -> set[str]:
    """The broker's, the databases' and RabbitMQ's management API's passwords."""
    conf = current_app.conf
    found: set[Any] = {conf.broker_password}
    found.update(database.get("PASSWORD") for database in connections.settings.values())
    for url in (
        conf.broker_url,
        conf.broker_read_url,
        conf.broker_write_url,
        settings.RABBITMQ_MANAGEMENT_URL,
    ):
        parts = url.split(";") if isinstance(url, str) else url or []
        found.update(urlsplit(str(part).strip()).password for part in parts)
    return {str(secret) for secret in found if secret}
