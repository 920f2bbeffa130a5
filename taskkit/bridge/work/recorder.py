"""Run records written beside the runs, not in their way: one writer thread per worker process.

Writing a row when a run starts and again when it ends costs two statements per
run, more than a no-op task itself. In a worker, ``track="runs"`` rows go through
this recorder instead:

- a run's RUNNING row is written only if the run is still going after
  :data:`START_AFTER` (or as soon as it reports progress): short runs never
  have one;
- finished rows are written together, one ``INSERT … ON CONFLICT DO UPDATE`` per
  batch: once :data:`BATCH_ROWS` of them wait (looked at every :data:`FLUSH_EVERY`),
  once no run has finished for :data:`QUIET`, or once the oldest has waited
  :data:`MAX_WAIT`. A busy process writes a batch every 50 ms; a steady trickle of
  runs no more than a few statements a second, so the statements a cluster sends
  grow with its runs more than with its processes.

The price, documented in "Run records": a worker process killed outright loses
the rows of the runs it finished in the last :data:`MAX_WAIT` at most. A warm
shutdown writes them. Outside a worker (tests, eager mode, ``run_inline``) and
for ``track="all"`` every row is written at once.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
    router,
    transaction,
)
from django.db.models import CharField

from ...models import TaskRun, storable
from .row_sql import Fields
from .row_sql import upsert_many as upsert_many  # tests stand in for it here

logger = logging.getLogger("taskkit.worker")

#: A run still going after this many seconds gets its RUNNING row.
START_AFTER = 0.2

#: How often the writer looks at what waits.
FLUSH_EVERY = 0.05

#: Finished rows that are written as soon as the writer looks.
BATCH_ROWS = 20

#: The longest a finished run's row waits for others to be written with.
MAX_WAIT = 0.5

#: Rows are written once no run has finished for this long: the last of a burst wait no more.
QUIET = 0.1

#: How long the writer pauses after the database refused a batch.
RETRY_AFTER = 1.0

#: The errors of a database that is away: the rows wait for it. Any other error is the
#: rows' own (a value the database refuses), and must not hold up the others.
UNREACHABLE = (OperationalError, InterfaceError)

#: The fields of a row that carry what the task was given and gave back.
_VALUES = ("payload", "result")


def write_rows(rows: dict[str, Fields]) -> None:
    """Write ``rows``; a row the database refuses is written without its payload and result.

    One bad row (a payload nested deeper than SQLite's JSON allows, a value
    PostgreSQL's ``jsonb`` refuses, a result with NUL in its text) must not hold
    up a batch for good, nor leave its run unfinished on the record: the batch
    is written again row by row (an upsert, so rows written already are
    rewritten as they are), and a refused row keeps its status, times and
    error, with the refusal added to its error, so the run still ends visibly.
    """
    try:
        _upsert(rows.items())
        return
    except UNREACHABLE:
        raise
    except Exception as exc:
        if len(rows) == 1:  # the row was refused: no need to try it again as it is
            _write_stripped(*next(iter(rows.items())), exc)
            return
        logger.exception("a batch of %s run rows was refused; writing them one by one", len(rows))
    for run_id, fields in rows.items():
        try:
            _upsert([(run_id, fields)])
        except UNREACHABLE:
            raise
        except Exception as exc:
            _write_stripped(run_id, fields, exc)


def _upsert(rows: Iterable[tuple[str, Fields]]) -> None:
    """:func:`upsert_many`, in a savepoint inside a caller's transaction (eager mode, a test):
    a refused row must not break the transaction the rows' second try is made in."""
    alias = router.db_for_write(TaskRun)
    if not connections[alias].in_atomic_block:
        upsert_many(rows)
        return
    with transaction.atomic(using=alias):
        upsert_many(rows)


def _write_stripped(run_id: str, fields: Fields, exc: Exception) -> None:
    """Write a refused row without its payload and result (its text made storable)."""
    logger.error("run %s: row refused (%s); written without payload and result", run_id, exc)
    try:
        _upsert([(run_id, stripped(fields, exc))])
    except UNREACHABLE:
        raise
    except Exception:
        logger.exception("run %s: its row cannot be written; left as it was", run_id)


def stripped(fields: Fields, exc: BaseException) -> Fields:
    """``fields`` without the values the database refused, and a word on why in the error.

    Text is made storable too: a lone surrogate (which no UTF-8 driver encodes) and NUL
    (which PostgreSQL's text refuses) are written as escapes, so a hand-made message's
    task name or error cannot keep its run off the record.
    """
    note = (
        f"(payload and result not stored: the database refused them: {type(exc).__name__}: {exc})"
    )
    kept = {name: fitted(name, value) for name, value in fields.items() if name not in _VALUES}
    if "payload" in fields:
        kept["payload"] = {}
    return {**kept, "error": storable(f"{fields.get('error') or ''} {note}".strip())}


def fitted(column: str, value: Any) -> Any:
    """``value`` as the run table's ``column`` takes it on every database: :func:`storable`,
    and text cut to the column's length (PostgreSQL refuses longer text; SQLite keeps it)."""
    value = storable(value)
    limit = _lengths().get(column)
    if limit and isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "…"
    return value


@functools.cache
def _lengths() -> dict[str, int]:
    """The length of each text column of the run table that has one."""
    return {
        field.name: field.max_length
        for field in TaskRun._meta.concrete_fields
        if isinstance(field, CharField) and field.max_length
    }


def upsert(run_id: str, fields: Fields) -> None:
    """Write one run's row now (without what the database refuses, as :func:`write_rows`)."""
    write_rows({run_id: fields})


class Recorder:
    """Pending RUNNING rows and finished rows of this process, and the thread that writes them."""

    def __init__(self) -> None:
        self.enabled = False
        self._cond = threading.Condition()
        self._starts: dict[str, tuple[float, Fields]] = {}
        self._finals: dict[str, Fields] = {}
        self._oldest = 0.0  # when the oldest of ``_finals`` came
        self._newest = 0.0  # and the newest
        self._writing: set[str] = set()
        self._flushing = threading.Lock()  # one flush at a time, so rows land in order
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = 0

    def started(self, run_id: str, fields: Fields) -> None:
        """A run started: its RUNNING row is due if it is still going after ``START_AFTER``."""
        if not self.enabled:
            upsert(run_id, fields)
            return
        with self._cond:
            self._starts[run_id] = (time.monotonic() + START_AFTER, fields)
        self._ensure_thread()

    def written(self, run_id: str) -> None:
        """Make sure the run's RUNNING row exists before it is updated (progress, failure)."""
        with self._cond:
            pending = self._starts.pop(run_id, None)
            while run_id in self._writing:
                self._cond.wait()
        if pending is not None:
            upsert(run_id, pending[1])

    def finished(self, run_id: str, fields: Fields) -> None:
        """A run ended: ``fields`` is its whole row, written with the next batch."""
        if not self.enabled:
            upsert(run_id, fields)
            return
        with self._cond:
            self._starts.pop(run_id, None)
            self._newest = time.monotonic()
            if not self._finals:
                self._oldest = self._newest
            self._finals[run_id] = fields
        self._ensure_thread()

    def due(self, now: float | None = None) -> bool:
        """Whether a batch is worth a statement now: enough rows, no more coming for now,
        one waited long enough, or a RUNNING row is due."""
        now = time.monotonic() if now is None else now
        with self._cond:
            if len(self._finals) >= BATCH_ROWS or (
                self._finals and (now - self._newest >= QUIET or now - self._oldest >= MAX_WAIT)
            ):
                return True
            return any(at <= now for at, _ in self._starts.values())

    def flush(self) -> None:
        """Write every finished row now, and the RUNNING rows that are due."""
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        with self._cond:
            now = time.monotonic()
            due = {key: fields for key, (at, fields) in self._starts.items() if at <= now}
            for key in due:
                del self._starts[key]
            finals, self._finals = self._finals, {}
            self._writing.update(due)
        try:
            write_rows(due)
            write_rows(finals)
        except Exception:
            logger.exception("could not write %s run rows; trying again", len(due) + len(finals))
            with self._cond:
                self._finals = {**finals, **self._finals}
                self._oldest = 0.0  # due again as soon as the writer tries again
            raise
        finally:
            with self._cond:
                self._writing.difference_update(due)
                self._cond.notify_all()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._cond:  # a forked child starts its own writer
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._loop, name="taskkit-recorder", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(FLUSH_EVERY):
                if not self.due():
                    continue
                try:
                    self.flush()
                except Exception:  # logged by flush; the rows wait for the next round
                    close_old_connections()
                    self._stop.wait(RETRY_AFTER)
        finally:
            connections.close_all()  # this thread's connections

    def shutdown(self) -> None:
        """Stop the writer and write what is pending: at a warm shutdown, and at exit."""
        if self._thread is None or self._pid != os.getpid():
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
        self.flush()


recorder = Recorder()


def _enable(**kwargs: Any) -> None:
    if not recorder.enabled:
        recorder.enabled = True
        atexit.register(recorder.shutdown)


def _shutdown(**kwargs: Any) -> None:
    recorder.shutdown()


def connect() -> None:
    """Batch the rows of runs in every worker started in this process (any pool)."""
    from celery import signals

    for name in ("worker_init", "worker_process_init"):
        getattr(signals, name).connect(_enable, weak=False, dispatch_uid=f"taskkit.{name}")
    for name in ("worker_shutdown", "worker_process_shutdown"):
        getattr(signals, name).connect(_shutdown, weak=False, dispatch_uid=f"taskkit.{name}")
