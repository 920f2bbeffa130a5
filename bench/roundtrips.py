"""Count database and broker round trips in this process, for the scale model.

Time varies with the machine; the number of round trips a run costs does not, and it is
what a database or a broker serving many workers pays. Counted client-side, in the
processes the bench controls (Redis's ``INFO commandstats`` is server-wide):

- SQL: every statement through a Django connection (an ``execute_wrapper`` on each one,
  as ``CaptureQueriesContext`` does, but in every thread), and every connection opened;
- Redis: every write of a command or a pipeline to a socket (redis-py's
  ``send_packed_command``), which is what kombu's transport and taskkit both go through.

A worker started with ``BENCH_COUNT_FILE`` set (see ``bench.celery_app``) counts from
import and writes its totals there as JSON, every 0.1 s and at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: The environment variable that makes a worker count and where it writes its totals.
COUNT_FILE = "BENCH_COUNT_FILE"


@dataclass
class Counts:
    sql: int = 0
    connects: int = 0
    redis: int = 0
    #: Tasks this process ran (a worker's ``task_postrun``): how the bench sees it is done.
    runs: int = 0

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.sql - other.sql,
            self.connects - other.connects,
            self.redis - other.redis,
            self.runs - other.runs,
        )


_lock = threading.Lock()
_counts = Counts()
_installed = False
#: ``BENCH_SQL_LOG``: a file every counted statement is appended to (what is it spent on?).
_log_path = os.environ.get("BENCH_SQL_LOG")
_sql_log = Path(_log_path).open("a") if _log_path else None  # noqa: SIM115 - open for good


def _add(field: str) -> None:
    with _lock:
        setattr(_counts, field, getattr(_counts, field) + 1)


def snapshot() -> Counts:
    """The totals so far (a copy)."""
    with _lock:
        return Counts(**asdict(_counts))


def _count_sql(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    _add("sql")
    if _sql_log is not None:
        with _lock:
            _sql_log.write(f"{sql[:200]}\n")
    return execute(sql, params, many, context)


def _watch(connection: Any) -> None:
    if _count_sql not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count_sql)


def _connected(sender: Any, connection: Any, **kwargs: Any) -> None:
    _add("connects")
    _watch(connection)


def install() -> None:
    """Start counting in this process (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    from django.db.backends.signals import connection_created
    from redis.connection import AbstractConnection

    connection_created.connect(_connected, weak=False, dispatch_uid="bench.roundtrips")
    send: Callable[..., None] = AbstractConnection.send_packed_command

    def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        _add("redis")
        send(self, command, check_health)

    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]


def watch_open_connections() -> None:
    """Count statements on the connections this thread has open already."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        _watch(connection)


def write(path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(snapshot())))
    tmp.replace(path)


def read(path: Path) -> Counts:
    return Counts(**json.loads(path.read_text()))


def _ran(**kwargs: Any) -> None:
    _add("runs")


def count_to_file(path: Path, every: float = 0.1) -> None:
    """Count in this process and keep ``path`` up to date (a worker's side)."""
    from celery.signals import task_postrun

    install()
    task_postrun.connect(_ran, weak=False, dispatch_uid="bench.roundtrips")
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            write(path)

    threading.Thread(target=loop, name="bench-roundtrips", daemon=True).start()

    def final() -> None:
        stop.set()
        write(path)

    atexit.register(final)


def from_environment() -> None:
    """Count to ``$BENCH_COUNT_FILE`` if it is set."""
    path = os.environ.get(COUNT_FILE)
    if path:
        count_to_file(Path(path))
