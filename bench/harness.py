"""The machinery the benchmarks share: result rows, the table, Redis, worker subprocesses.

Nothing here needs Django, so ``run.py`` can import it before ``django.setup()``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

import redis

REPO = Path(__file__).resolve().parents[1]
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
#: Redis database the bench empties and uses (``TASKKIT_BENCH_REDIS_DB``, default 14).
REDIS_DB = int(os.environ.get("TASKKIT_BENCH_REDIS_DB", "14"))
BROKER_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
#: The queue every benchmark task goes to (tests.settings' CELERY_TASK_DEFAULT_QUEUE).
QUEUE = "default"


# -- results -------------------------------------------------------------------------------


@dataclass
class Row:
    """One measurement, for raw Celery and for taskkit, taken in the same run."""

    bench: str
    metric: str
    unit: str  # "/s", "s" or "MiB": how values are printed
    raw: float | None
    taskkit: float | None
    target: str = ""
    #: ``True``/``False`` when the row has a target, ``None`` when it is for information.
    passed: bool | None = None
    note: str = ""
    #: A ratio that is not taskkit/raw (a what-if row compares against another row).
    ratio_override: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.ratio_override is not None:
            return self.ratio_override
        if self.raw is None or self.taskkit is None or self.raw == 0:
            return None
        return self.taskkit / self.raw


def fmt(value: float | None, unit: str) -> str:
    """A value with its unit, e.g. ``4,812 /s``, ``231 ms``, ``96.4 MiB``."""
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value:,.0f} /s"
    if unit == "s":
        return f"{value * 1000:,.0f} ms" if abs(value) < 1 else f"{value:,.2f} s"
    if unit == "MiB":
        return f"{value:,.1f} MiB"
    return f"{value:,.3g} {unit}"


def render_grid(
    header: Sequence[str], lines: Sequence[Sequence[str]], right: Collection[int] = ()
) -> list[str]:
    """``lines`` under ``header`` in aligned columns, those in ``right`` right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(header), line(["-" * width for width in widths]), *map(line, lines)]


def render_table(rows: Sequence[Row]) -> str:
    """The results as a plain-text table, notes below it."""
    header = ("benchmark", "metric", "raw Celery", "taskkit", "taskkit/raw", "target", "result")
    lines = []
    for row in rows:
        ratio = row.ratio
        verdict = {True: "PASS", False: "MISS", None: ""}[row.passed]
        lines.append(
            (
                row.bench,
                row.metric,
                fmt(row.raw, row.unit),
                fmt(row.taskkit, row.unit),
                "-" if ratio is None else f"{ratio:.2f}",
                row.target,
                verdict,
            )
        )
    out = render_grid(header, lines, right={2, 3, 4})  # numbers line up on the right
    notes = [f"  [{row.bench} / {row.metric}] {row.note}" for row in rows if row.note]
    if notes:
        out += ["", "Notes:", *notes]
    return "\n".join(out)


# -- Redis -----------------------------------------------------------------------------------


def broker_redis() -> redis.Redis:
    """A client on the benchmarks' Redis database."""
    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_timeout=30)


def purge_broker(client: redis.Redis) -> None:
    """Delete every message, unacked entry and bench key, but keep kombu's bindings.

    ``FLUSHDB`` would also drop ``_kombu.binding.*``, which a live producer believes it
    has declared already; its next messages would then be routed nowhere.
    """
    keys = [key for key in client.scan_iter(count=1000) if not key.startswith(b"_kombu.binding")]
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


def queued(client: redis.Redis, queue: str = QUEUE) -> int:
    """Messages waiting in ``queue`` (every priority sub-list)."""
    total = 0
    for key in client.scan_iter(match=f"{queue}*", count=1000):
        if client.type(key) == b"list":
            total += int(client.llen(key))
    return total


# -- timing and waiting ----------------------------------------------------------------------


class BenchError(RuntimeError):
    """A benchmark could not be measured (a worker died, a wait timed out …)."""


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    workers: Sequence[Worker] = (),
    poll: float = 0.05,
) -> Any:
    """Poll ``predicate`` until it is truthy and return its value; raise on timeout or death."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for worker in workers:
            worker.check()
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


@dataclass
class Progress:
    """How a counted batch of runs went, seen by polling from the bench process."""

    total: int
    started: float  # perf_counter when timing began
    first_at: float = 0.0  # first poll that saw a completion
    first_count: int = 0  # completions that poll saw
    done_at: float = 0.0  # first poll that saw all of them

    @property
    def rate(self) -> float:
        """Completions per second between the first seen completion and the last."""
        span = self.done_at - self.first_at
        remaining = self.total - self.first_count
        if remaining <= 0 or span <= 0:
            raise BenchError("every run finished before the first poll: raise N")
        return remaining / span

    @property
    def wall(self) -> float:
        return self.done_at - self.started


def follow(
    counter: Callable[[], int],
    total: int,
    timeout: float,
    workers: Sequence[Worker],
    poll: float = 0.01,
) -> Progress:
    """Poll ``counter`` up to ``total``, noting when it first moved and when it got there."""
    progress = Progress(total=total, started=time.perf_counter())
    seen = 0

    def arrived() -> bool:
        nonlocal seen
        seen = counter()
        now = time.perf_counter()
        if seen and not progress.first_at:
            progress.first_at, progress.first_count = now, seen
        if seen >= total:
            progress.done_at = now
        return seen >= total

    try:
        wait_until(arrived, timeout, f"{total} runs", workers, poll)
    except BenchError as exc:
        raise BenchError(f"{exc} ({seen} of {total} done)") from exc
    return progress


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise BenchError("no values to take a percentile of")
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# -- worker subprocesses -------------------------------------------------------------------

_LIVE: set[Worker] = set()


def stop_all_workers() -> None:
    """Stop every worker still running (atexit, and the SIGTERM handler of run.py)."""
    for worker in list(_LIVE):
        worker.stop()


atexit.register(stop_all_workers)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ")".
        ppid = int(stat.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    tree = _children()
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(tree.get(pid, ()))
    return pids


def _proc_kib(pid: int, file: str, key: str) -> int:
    """The ``key:`` line of ``/proc/<pid>/<file>`` in KiB (0 if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size of one process in KiB (shared pages split between sharers)."""
    return _proc_kib(pid, "smaps_rollup", "Pss")


def vm_rss_kib(pid: int) -> int:
    """``VmRSS`` of one process in KiB (0 if it is gone)."""
    return _proc_kib(pid, "status", "VmRSS")


@dataclass(eq=False)
class Worker:
    """A ``celery worker`` subprocess on ``bench.celery_app``, in its own process group.

    Use it as a context manager: leaving the block stops the worker and every child
    (the pool, the embedded Beat), also on errors.
    """

    label: str
    log_dir: Path
    beat: bool = False
    pool: str = "threads"
    concurrency: int = 4
    queues: Sequence[str] = (QUEUE,)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _log: IO[bytes] | None = None

    def command(self) -> list[str]:
        name = f"bench-{self.label}-{uuid.uuid4().hex[:6]}@%h"
        command = [
            sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker",
            "-Q", ",".join(self.queues), "-P", self.pool, "-c", str(self.concurrency),
            "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", name,
        ]  # fmt: skip
        if self.beat:
            command += [
                "-B", "--scheduler", "taskkit.scheduler:Scheduler",
                # Only django-celery-beat's scheduler runs, but keep any file out of the repo.
                "-s", str(self.log_dir / f"beat-schedule-{self.label}"),
            ]  # fmt: skip
        return command

    def environment(self) -> dict[str, str]:
        """The subprocess's environment: the bench's database (run.py sets the variables)."""
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "TASKKIT_TEST_BROKER": BROKER_URL,
            "TASKKIT_TEST_BROKER_OPTIONS": "{}",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])
            ),
            **self.extra_env,
        }

    def start(self) -> Self:
        self.log_path = self.log_dir / f"worker-{self.label}.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(),
            cwd=REPO,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches every child
        )
        _LIVE.add(self)
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError(f"worker {self.label} was not started")
        return self.process.pid

    def log_tail(self, lines: int = 25) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def check(self) -> None:
        """Raise if the worker has exited (with the end of its log)."""
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(
                f"worker {self.label} exited with code {self.process.returncode}; "
                f"log {self.log_path} ends with:\n{self.log_tail()}"
            )

    def rss_mib(self) -> tuple[float, int]:
        """Summed ``VmRSS`` of the worker and its children in MiB, and how many processes."""
        self.check()
        pids = process_tree(self.pid)
        return sum(vm_rss_kib(pid) for pid in pids) / 1024, len(pids)

    def pss_mib(self) -> float:
        """Summed PSS of the worker and its children in MiB (a forked child's shared
        pages, counted in full by each ``VmRSS``, are split between them here)."""
        self.check()
        return sum(pss_kib(pid) for pid in process_tree(self.pid)) / 1024

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, timeout: float = 60.0) -> None:
        """Warm shutdown (SIGTERM to the group), then SIGKILL after ``timeout`` seconds."""
        process = self.process
        if process is None:
            return
        try:
            if process.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    process.wait(10)
            # The main process may be gone with a child (Beat, pool) left in the group.
            self._signal_group(signal.SIGKILL)
        finally:
            _LIVE.discard(self)
            if self._log is not None:
                self._log.close()
                self._log = None
