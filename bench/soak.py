"""Soak taskkit: ``python bench/soak.py [--quick] [--n N] [--minutes M] [--keep]``.

Enqueues N runs (100,000) paced over M minutes (5): most normal (``enqueue_many``
batches and single ``enqueue``), a share delayed (``enqueue_at``/``enqueue_in``,
due at spread times within the window), while two Beats send a task every
second and a cron task every minute. Two workers run everything. Everything is
private to the run: a ``redis-server`` on a free port (broker, and the lists the
runs count themselves in), a PostgreSQL database created and migrated for it
(dropped at the end unless ``--keep``), the worker and Beat subprocesses.

At the end it prints, per kind, enqueued / ran / lost / duplicated, the
periodic ticks owed between the first and the last, the run table's rows not
finished or failed, and each worker's RSS. It exits 1 on a lost run, a
duplicate on an exactly-once path (delayed runs, periodic ticks), a missing
tick, a failed or unfinished row, a dead worker, or RSS growth in the second
half beyond the tolerance.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
import redis  # noqa: E402

from bench.harness import (  # noqa: E402 - needs the repository on sys.path
    BenchError,
    Worker,
    render_grid,
    stop_all_workers,
    wait_until,
)
from bench.soak_tasks import (  # noqa: E402
    DELAYED,
    NORMAL,
    PERIODIC_MINUTE,
    PERIODIC_SECOND,
    PROBE,
    ran_key,
    ticks_key,
)
from tests.reliability.servers import PrivateRedis  # noqa: E402

QUEUE = "default"
#: Of every 10 runs enqueued, this many are delayed; the rest are normal.
DELAYED_PER_10 = 3
#: Of normal runs, one in this many is a single ``enqueue``; the others go in batches.
SINGLE_EVERY = 4
BATCH = 200
#: Seconds between two rounds of enqueues (what is due in the next step).
STEP = 1.0
RSS_EVERY = 10.0  # seconds between RSS samples


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, help="runs to enqueue (default 100,000; quick 10,000)")
    parser.add_argument(
        "--minutes", type=float, help="enqueue window in minutes (default 5; quick 1)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a short validation run: 10,000 runs over 1 minute"
    )
    parser.add_argument("--pool", default="threads", help="worker pool (default threads)")
    parser.add_argument("--concurrency", type=int, default=4, help="per worker (default 4)")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=1200.0,
        help="seconds to wait after the window for every run to finish (default 1200)",
    )
    parser.add_argument(
        "--rss-pct",
        type=float,
        default=20.0,
        help="fail if a worker's RSS grows more than this %% over the second half (default 20)",
    )
    parser.add_argument(
        "--rss-mib",
        type=float,
        default=50.0,
        help="... or more than this many MiB (default 50)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the mix")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the database and the temporary folder (logs)",
    )
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 10_000 if args.quick else 100_000
    if args.minutes is None:
        args.minutes = 1.0 if args.quick else 5.0
    if args.n < 1 or args.minutes <= 0:
        parser.error("--n and --minutes must be positive")
    return args


# -- the private servers and processes ------------------------------------------------------


def postgres(database: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(host="127.0.0.1", user="postgres", dbname=database, autocommit=True)


@dataclass
class Env:
    """What the soak's processes share: folder, private Redis, database name."""

    tmp: Path
    redis: PrivateRedis
    database: str

    @property
    def counts_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/1"

    def variables(self) -> dict[str, str]:
        return {
            "DJANGO_SETTINGS_MODULE": "bench.soak_settings",
            "TASKKIT_TEST_DATABASE": "postgres",
            "TASKKIT_TEST_PG_NAME": self.database,
            "TASKKIT_TEST_BROKER": self.redis.url,
            "TASKKIT_SOAK_COUNTS": self.counts_url,
        }


@dataclass(eq=False)
class SoakProcess(Worker):
    """A ``celery worker`` or ``celery beat`` on ``tests.celery_app`` with the soak's settings."""

    role: str = "worker"
    soak: Env | None = None

    def command(self) -> list[str]:
        base = [sys.executable, "-m", "celery", "-A", "tests.celery_app"]
        if self.role == "beat":
            return [
                *base, "beat", "--scheduler", "taskkit.scheduler:Scheduler",
                # info: the log shows each tick sent and each change of leader
                "-s", str(self.log_dir / f"beat-schedule-{self.label}"), "-l", "info",
            ]  # fmt: skip
        return [
            *base, "worker", "-Q", QUEUE, "-P", self.pool, "-c", str(self.concurrency),
            "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"{self.label}@%h",
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        assert self.soak is not None
        return {
            **os.environ,
            **self.soak.variables(),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])
            ),
        }


def configure(env: Env) -> None:
    """Create and migrate the database, set Django up, make the soak's Celery app current."""
    with postgres() as server:
        server.execute(f'CREATE DATABASE "{env.database}"'.encode())
    os.environ.update(env.variables())
    import django
    from django.core.management import call_command

    django.setup()
    from django.db import connection

    if connection.settings_dict["NAME"] != env.database:  # settings read too early
        raise BenchError(f"Django is set up on {connection.settings_dict['NAME']}")
    call_command("migrate", verbosity=0, interactive=False)

    from tests.celery_app import app

    app.set_current()
    app.set_default()


def drop_database(name: str) -> None:
    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()
    with postgres() as server:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


# -- RSS --------------------------------------------------------------------------------------


@dataclass
class RssSampler:
    """Samples each worker's RSS (main process and children) every ``RSS_EVERY`` seconds."""

    workers: list[SoakProcess]
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            try:
                mib, _ = worker.rss_mib()
            except BenchError as exc:
                if str(exc) not in self.errors:
                    self.errors.append(str(exc))
                continue
            self.samples.setdefault(worker.label, []).append((now, mib))

    def _run(self) -> None:
        while not self._stop.wait(RSS_EVERY):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


@dataclass
class RssVerdict:
    label: str
    start: float
    peak: float
    mid: float
    end: float
    samples: int

    @property
    def growth(self) -> float:
        """From the sample nearest the middle of the run to the median of the last three."""
        return self.end - self.mid


def rss_verdict(label: str, samples: list[tuple[float, float]]) -> RssVerdict:
    values = [mib for _, mib in samples]
    first, last = samples[0][0], samples[-1][0]
    middle = min(samples, key=lambda s: abs(s[0] - (first + last) / 2))[1]
    return RssVerdict(
        label,
        start=values[0],
        peak=max(values),
        mid=middle,
        end=statistics.median(values[-3:]),
        samples=len(values),
    )


# -- enqueueing -----------------------------------------------------------------------------


@dataclass
class Ledger:
    """Every run id an enqueue returned, per task; and how far behind the pace it fell."""

    ids: dict[str, list[str]] = field(default_factory=lambda: {NORMAL: [], DELAYED: []})
    calls: Counter[str] = field(default_factory=Counter)
    raised: Counter[str] = field(default_factory=Counter)
    max_lag: float = 0.0
    last_due: datetime | None = None


def enqueue_paced(
    n: int, window: float, rng: random.Random, workers: list[SoakProcess], ledger: Ledger
) -> None:
    """Enqueue ``n`` runs at an even pace over ``window`` seconds, in steps of ``STEP``."""
    from django.utils import timezone

    import taskkit

    started = time.monotonic()
    done = steps = 0
    last_report = started
    while done < n:
        elapsed = time.monotonic() - started
        ledger.max_lag = max(ledger.max_lag, elapsed - steps * STEP)
        steps += 1
        target = n if steps * STEP >= window else min(n, round(n * steps * STEP / window))
        batch: list[dict[str, Any]] = []
        for i in range(done, target):
            payload = {"i": i}
            if i % 10 < DELAYED_PER_10:
                delay = rng.uniform(0, max(window - elapsed, 1.0))  # due within the window
                if (i // 10) % 2:
                    handle = taskkit.enqueue_in(DELAYED, delay, payload)
                    ledger.calls["enqueue_in"] += 1
                else:
                    when = timezone.now() + timedelta(seconds=delay)
                    handle = taskkit.enqueue_at(DELAYED, when, payload)
                    ledger.calls["enqueue_at"] += 1
                ledger.ids[DELAYED].append(handle.id)
            elif (i // 10) % SINGLE_EVERY == 0:
                ledger.ids[NORMAL].append(taskkit.enqueue(NORMAL, payload).id)
                ledger.calls["enqueue"] += 1
            else:
                batch.append(payload)
            if len(batch) >= BATCH:
                flush(batch, ledger)
        flush(batch, ledger)
        done = target
        for worker in workers:
            worker.check()
        now = time.monotonic()
        if now - last_report >= 30:
            print(f"   {done:,} of {n:,} enqueued after {now - started:.0f} s", flush=True)
            last_report = now
        time.sleep(max(started + steps * STEP - time.monotonic(), 0))


def flush(batch: list[dict[str, Any]], ledger: Ledger) -> None:
    import taskkit

    if batch:
        ledger.ids[NORMAL] += [h.id for h in taskkit.enqueue_many(NORMAL, batch)]
        ledger.calls["enqueue_many"] += 1
        batch.clear()


# -- the verdict ----------------------------------------------------------------------------


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def table(self, title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        right = set(range(1, len(header)))
        self.lines += ["", title, *render_grid(header, rows, right)]

    def fail(self, why: str) -> None:
        self.failures.append(why)


def items(counts: redis.Redis, key: str) -> list[str]:
    """A Redis list's items as text."""
    return [
        item.decode() if isinstance(item, bytes) else item for item in counts.lrange(key, 0, -1)
    ]


def ran(counts: redis.Redis, name: str) -> list[str]:
    return items(counts, ran_key(name))


def check_runs(report: Report, counts: redis.Redis, ledger: Ledger) -> None:
    """Per kind: enqueued / ran / lost / duplicated / unexpected."""
    from taskkit.models import TaskRun

    rows = []
    kinds = [
        ("normal", NORMAL, ledger.ids[NORMAL], False),
        ("delayed", DELAYED, ledger.ids[DELAYED], True),
    ]
    for name in (PERIODIC_SECOND, PERIODIC_MINUTE):
        sent = [str(pk) for pk in TaskRun.objects.filter(name=name).values_list("pk", flat=True)]
        kinds.append((f"periodic {name}", name, sent, True))
    for kind, name, enqueued, exactly_once in kinds:
        seen = ran(counts, name)
        unique = set(seen)
        lost = len(set(enqueued) - unique)
        duplicated = len(seen) - len(unique)
        unexpected = len(unique - set(enqueued))
        bad = lost or unexpected or (exactly_once and duplicated)
        rows.append(
            (
                kind,
                f"{len(enqueued):,}",
                f"{len(unique):,}",
                f"{lost:,}",
                f"{duplicated:,}",
                f"{unexpected:,}",
                "exactly once" if exactly_once else "at least once",
                "FAIL" if bad else "ok",
            )
        )
        if lost:
            report.fail(f"{lost} {kind} runs lost")
        if unexpected:
            report.fail(f"{unexpected} {kind} runs ran that no enqueue returned")
        if exactly_once and duplicated:
            report.fail(f"{duplicated} {kind} runs ran twice (an exactly-once path)")
    report.table(
        "Runs (enqueued: ids an enqueue returned, or periodic rows the Beats inserted)",
        ("kind", "enqueued", "ran", "lost", "duplicated", "unexpected", "promise", "result"),
        rows,
    )


def check_ticks(report: Report, counts: redis.Redis) -> None:
    """Periodic ticks owed between the first and the last one run, missing, duplicated."""
    rows = []
    for name, step in ((PERIODIC_SECOND, 1), (PERIODIC_MINUTE, 60)):
        ticks = [datetime.fromisoformat(item) for item in items(counts, ticks_key(name))]
        if not ticks:
            rows.append((name, "-", "-", "0", "0", "0", "0", "FAIL" if step == 1 else "-"))
            if step == 1:
                report.fail(f"no tick of {name} ran")
            continue
        first, last = min(ticks), max(ticks)
        span = int((last - first).total_seconds()) // step
        owed = {first + timedelta(seconds=step * k) for k in range(span + 1)}
        missing = len(owed - set(ticks))
        duplicated = len(ticks) - len(set(ticks))
        off_grid = len(set(ticks) - owed)
        bad = missing or duplicated or off_grid
        rows.append(
            (
                name,
                first.strftime("%H:%M:%S"),
                last.strftime("%H:%M:%S"),
                f"{len(owed):,}",
                f"{len(ticks):,}",
                f"{missing:,}",
                f"{duplicated:,}",
                "FAIL" if bad else "ok",
            )
        )
        if missing:
            gaps = ", ".join(t.strftime("%H:%M:%S") for t in sorted(owed - set(ticks))[:10])
            report.fail(f"{missing} ticks of {name} missing between the first and the last: {gaps}")
        if duplicated:
            report.fail(f"{duplicated} ticks of {name} ran twice")
        if off_grid:
            report.fail(f"{off_grid} ticks of {name} off the {step} s grid")
    report.table(
        "Periodic ticks (scheduledTime each tick's run recorded)",
        ("task", "first", "last", "owed", "ran", "missing", "duplicated", "result"),
        rows,
    )


def check_table(report: Report) -> None:
    """taskkit's run table: the soak's rows by task and status; not finished or failed fail."""
    from django.db.models import Count

    from taskkit.models import FINISHED, RunStatus, TaskRun

    rows = []
    grouped = (
        TaskRun.objects.filter(name__startswith="soak:")
        .values_list("name", "status")
        .annotate(n=Count("pk"))
        .order_by("name", "status")
    )
    for name, status, n in grouped:
        bad = status not in FINISHED or status == RunStatus.FAILED
        rows.append((name, status, f"{n:,}", "FAIL" if bad else "ok"))
        if status == RunStatus.FAILED:
            report.fail(f"{n} {name} rows failed")
        elif status not in FINISHED:
            report.fail(f"{n} {name} rows not finished ({status})")
    report.table("Run table (taskkit_taskrun)", ("task", "status", "rows", "result"), rows)


def check_rss(report: Report, sampler: RssSampler, pct: float, mib: float) -> None:
    rows = []
    for label, samples in sampler.samples.items():
        verdict = rss_verdict(label, samples)
        limit = min(verdict.mid * pct / 100, mib)
        bad = verdict.growth > limit
        rows.append(
            (
                label,
                f"{verdict.start:.1f}",
                f"{verdict.peak:.1f}",
                f"{verdict.mid:.1f}",
                f"{verdict.end:.1f}",
                f"{verdict.growth:+.1f}",
                f"{limit:.1f}",
                str(verdict.samples),
                "FAIL" if bad else "ok",
            )
        )
        if bad:
            report.fail(
                f"{label}'s RSS grew {verdict.growth:.1f} MiB over the second half "
                f"(limit {limit:.1f} MiB: {pct:g} % of {verdict.mid:.1f}, at most {mib:g})"
            )
    for error in sampler.errors:
        report.fail(error.splitlines()[0])
    report.table(
        f"Worker RSS, MiB (main process + children, every {RSS_EVERY:g} s; growth: mid to end)",
        ("worker", "start", "peak", "mid", "end", "growth", "limit", "samples", "result"),
        rows,
    )


# -- the run --------------------------------------------------------------------------------


def wait_ready(workers: list[SoakProcess], beats: list[SoakProcess], counts: redis.Redis) -> None:
    """Both workers answer a ping and run a probe; a Beat holds the lease."""
    from celery import current_app

    import taskkit
    from taskkit.models import SchedulerLease

    names = {f"{w.label}@" for w in workers}

    def pinged() -> bool:
        replies = current_app.control.ping(timeout=1.0) or []
        answered = {name.partition("@")[0] + "@" for reply in replies for name in reply}
        return names <= answered

    wait_until(pinged, 120, "both workers to answer a ping", [*workers, *beats], poll=0.5)
    probe = taskkit.enqueue(PROBE, {"probe": True}).id
    wait_until(lambda: probe in ran(counts, PROBE), 60, "a probe run", workers, poll=0.2)
    wait_until(
        lambda: SchedulerLease.objects.filter(name="beat").exists(),
        60,
        "a Beat to take the lease",
        [*workers, *beats],
        poll=0.5,
    )


def drain(
    counts: redis.Redis,
    ledger: Ledger,
    workers: list[SoakProcess],
    beats: list[SoakProcess],
    timeout: float,
) -> None:
    """Wait for every enqueued run; then stop the Beats and wait for their last ticks."""
    from taskkit.models import TaskRun

    expected = {name: len(set(ids)) for name, ids in ledger.ids.items()}

    def enqueued_done() -> bool:
        return all(counts.llen(ran_key(name)) >= n for name, n in expected.items())

    try:
        wait_until(enqueued_done, timeout, "every enqueued run", [*workers, *beats], poll=1.0)
    except BenchError:
        print("   drain timed out: counting what ran", flush=True)
    for beat in beats:
        beat.stop()
    periodic = (PERIODIC_SECOND, PERIODIC_MINUTE)

    def ticks_done() -> bool:
        rows = TaskRun.objects.filter(name__in=periodic).count()
        return sum(counts.llen(ran_key(name)) for name in periodic) >= rows

    with contextlib.suppress(BenchError):
        wait_until(ticks_done, 60, "the last periodic ticks", workers, poll=0.5)
    time.sleep(3)  # a run sent twice would show by now


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every cleanup


def soak(args: argparse.Namespace, env: Env, report: Report) -> None:
    configure(env)
    counts = redis.Redis.from_url(env.counts_url, socket_timeout=30)
    window = args.minutes * 60
    workers = [
        SoakProcess(
            f"soak-worker-{k}",
            env.tmp,
            pool=args.pool,
            concurrency=args.concurrency,
            soak=env,
        ).start()
        for k in (1, 2)
    ]
    beats = [SoakProcess(f"soak-beat-{k}", env.tmp, role="beat", soak=env).start() for k in (1, 2)]
    wait_ready(workers, beats, counts)
    sampler = RssSampler(workers)
    sampler.start()
    ledger = Ledger()
    print(
        f"-- enqueueing {args.n:,} runs over {window:.0f} s ({DELAYED_PER_10 * 10} % delayed) ...",
        flush=True,
    )
    began = time.monotonic()
    try:
        enqueue_paced(args.n, window, random.Random(args.seed), workers, ledger)
        took = time.monotonic() - began
        print(f"   done in {took:.1f} s (at most {ledger.max_lag:.1f} s behind the pace)")
        time.sleep(max(window - took, 0))
        print("-- draining ...", flush=True)
        drained = time.monotonic()
        drain(counts, ledger, workers, beats, args.drain_timeout)
        drained = time.monotonic() - drained
        print(f"   done in {drained:.1f} s", flush=True)
    finally:
        sampler.stop()
    calls = ", ".join(f"{name} {n:,}" for name, n in sorted(ledger.calls.items()))
    report.lines.append(f"Enqueue calls: {calls}; at most {ledger.max_lag:.1f} s behind the pace")
    total = args.n + sum(
        int(counts.llen(ran_key(name))) for name in (PERIODIC_SECOND, PERIODIC_MINUTE)
    )
    busy = time.monotonic() - began
    report.lines.append(
        f"Workers: {total:,} runs in {busy:.0f} s from the first enqueue ({total / busy:,.0f} /s); "
        f"drained {drained:.0f} s after the window (the Beats' stop and a 3 s wait included)"
    )
    check_runs(report, counts, ledger)
    check_ticks(report, counts)
    check_table(report)
    check_rss(report, sampler, args.rss_pct, args.rss_mib)
    broker = redis.Redis.from_url(env.redis.url)
    left = sum(
        int(broker.llen(key))
        for key in broker.scan_iter(match=f"{QUEUE}*")
        if broker.type(key) == b"list"
    )
    report.lines.append(f"\nMessages left in the queue: {left:,}")
    if left:
        report.fail(f"{left} messages left in the queue")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="taskkit-soak-"))
    server = PrivateRedis(tmp, persistent=False)
    env = Env(tmp, server, f"taskkit_soak_{uuid.uuid4().hex[:12]}")
    report = Report()
    print(
        f"taskkit soak: {args.n:,} runs over {args.minutes:g} min, 2 workers "
        f"(-P {args.pool} -c {args.concurrency}), 2 Beats; redis-server on port {server.port}, "
        f"PostgreSQL database {env.database}, logs in {tmp}",
        flush=True,
    )
    try:
        server.start()
        soak(args, env, report)
    except KeyboardInterrupt:
        report.fail("interrupted")
    except Exception as exc:
        report.fail(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        traceback.print_exc(file=sys.stderr)
    finally:
        stop_all_workers()
        if server.process is not None and server.process.poll() is None:
            server.kill()
        if args.keep:
            print(f"Kept the database {env.database} and {tmp}")
        else:
            try:
                drop_database(env.database)
            except Exception as exc:
                print(f"could not drop {env.database}: {type(exc).__name__}: {exc}")

    print("\n".join(report.lines))
    elapsed = time.monotonic() - started
    print(f"\nTotal time: {elapsed:.1f} s ({elapsed / 60:.1f} min)")
    if report.failures:
        print("FAILED:\n" + "\n".join(f"  - {why}" for why in report.failures))
        if not args.keep:
            print(f"Worker and Beat logs kept in {tmp}")
        return 1
    print("PASSED: nothing lost, no duplicate on an exactly-once path, worker RSS steady")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
