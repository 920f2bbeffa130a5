"""The eight benchmarks. Each takes the run's :class:`Config` and returns its rows.

Imported after ``django.setup()`` (it uses taskkit's models), with ``bench.celery_app``
made Celery's current app, so taskkit publishes through the same app as raw Celery.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

import taskkit
from taskkit.models import RunStatus, TaskRun

from . import roundtrips
from .celery_app import COUNT_KEY, LATENCY_KEY, PING_KEY, app, count, noop, ping, stamp
from .harness import (
    QUEUE,
    BenchError,
    Progress,
    Row,
    Worker,
    broker_redis,
    follow,
    percentile,
    purge_broker,
    queued,
    wait_until,
)
from .roundtrips import Counts

#: How often the drain is looked at, the same on both sides: a 10 ms Django COUNT (taskkit)
#: against a Redis GET (raw) weighed on two cores; 50 ms keeps the observer light.
POLL = 0.05
TASK = "echo:payload"  # the taskkit side: a task of the test apps that returns its payload


@dataclass(frozen=True)
class Config:
    quick: bool
    tmp: Path

    @property
    def enqueue_n(self) -> int:
        return 1_000 if self.quick else 5_000

    @property
    def rounds(self) -> int:
        return 2 if self.quick else 3

    bulk_n: int = 10_000
    delayed_n: int = 200

    @property
    def drain_n(self) -> int:
        return 500 if self.quick else 5_000

    @property
    def rss_n(self) -> int:
        return 20_000 if self.quick else 100_000

    @property
    def admin_n(self) -> int:
        return 100_000 if self.quick else 1_000_000

    @property
    def delete_n(self) -> int:
        return 20_000 if self.quick else 100_000

    @property
    def delete_rounds(self) -> int:
        """Rounds of the delete by name and payload: a round is a copy of the list, not a fill."""
        return 3 if self.quick else 7

    @property
    def scale_n(self) -> int:
        return 500 if self.quick else 2_000

    #: Seconds a worker sits before its RSS is read.
    settle: float = 10.0


def payload(i: int) -> dict[str, Any]:
    """The same small JSON payload for both sides."""
    return {"n": i, "user": "bench", "tags": ["a", "b", "c"], "flag": True, "ratio": 0.5}


def clean_slate() -> None:
    """No messages, no bench keys in Redis, no run rows."""
    purge_broker(broker_redis())
    TaskRun.objects.all().delete()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def expect_queued(n: int, side: str) -> None:
    seen = queued(broker_redis())
    if seen != n:
        raise BenchError(f"{side}: {n} messages sent but {seen} are in the queue")


def succeeded() -> int:
    return TaskRun.objects.filter(status=RunStatus.SUCCEEDED).count()


def raw_ready(worker: Worker) -> None:
    """Wait until a raw worker has run a ping task."""
    token = uuid.uuid4().hex
    ping.apply_async(kwargs={"token": token})
    client = broker_redis()
    wait_until(lambda: client.sismember(PING_KEY, token), 90, f"{worker.label} to start", [worker])


def taskkit_ready(worker: Worker) -> None:
    """Wait until a worker with Beat has promoted and run a delayed run due now."""
    probe = taskkit.enqueue_in(TASK, 0, {"probe": worker.label})
    wait_until(
        lambda: TaskRun.objects.filter(pk=probe.id, status=RunStatus.SUCCEEDED).exists(),
        90,
        f"{worker.label} (worker + Beat) to run a delayed probe",
        [worker],
    )
    TaskRun.objects.filter(pk=probe.id).delete()


# -- 1. enqueue rate --------------------------------------------------------------------------


def bench_enqueue(cfg: Config) -> list[Row]:
    """One enqueue at a time: ``apply_async`` on a plain task vs ``taskkit.enqueue``."""
    n = cfg.enqueue_n

    def raw() -> None:
        for i in range(n):
            noop.apply_async(kwargs=payload(i))

    def tk() -> None:
        for i in range(n):
            taskkit.enqueue(TASK, payload(i))

    clean_slate()
    for i in range(200):  # warm-up: connections, declarations, imports, caches
        noop.apply_async(kwargs=payload(i))
        taskkit.enqueue(TASK, payload(i))
    best = {"raw": 0.0, "taskkit": 0.0}
    sides = [("raw", raw), ("taskkit", tk)]
    for round_ in range(cfg.rounds):
        for side, fn in sides if round_ % 2 == 0 else sides[::-1]:
            purge_broker(broker_redis())
            rate = n / timed(fn)
            expect_queued(n, side)
            best[side] = max(best[side], rate)
    ratio = best["taskkit"] / best["raw"]
    return [
        Row(
            "1 enqueue",
            f"enqueue rate, N={n:,}",
            "/s",
            best["raw"],
            best["taskkit"],
            target="ratio >= 1.5",
            passed=ratio >= 1.5,
            note=f"best of {cfg.rounds} interleaved rounds per side, after 200 warm-up enqueues",
        )
    ]


# -- 2. bulk enqueue --------------------------------------------------------------------------


def bench_bulk(cfg: Config) -> list[Row]:
    """``taskkit.enqueue_many`` of 10,000 against a raw ``apply_async`` loop of 10,000.

    A what-if row shows Celery's own loop with kombu's publish batching (not taskkit code).
    """
    n = cfg.bulk_n
    payloads = [payload(i) for i in range(n)]

    def raw() -> None:
        for p in payloads:
            noop.apply_async(kwargs=p)

    def tk() -> None:
        taskkit.enqueue_many(TASK, payloads)

    def raw_batched() -> None:
        # Celery's own apply_async over one producer, with kombu's Redis publish
        # batching (Producer.batch, kombu >= 5.7) buffering the LPUSHes in a pipeline.
        with app.producer_or_acquire() as producer:
            if not producer.supports_batch_publish:
                raise BenchError("this kombu/transport has no publish batching")
            with producer.batch(max_size=1000):
                for p in payloads:
                    noop.apply_async(kwargs=p, producer=producer)

    clean_slate()
    warm = [payload(i) for i in range(200)]
    taskkit.enqueue_many(TASK, warm)
    for p in warm:
        noop.apply_async(kwargs=p)
    rounds = 1 if cfg.quick else 2
    sides: list[tuple[str, Callable[[], None]]] = [
        ("raw", raw),
        ("taskkit", tk),
        ("batched", raw_batched),
    ]
    best = dict.fromkeys([name for name, _ in sides], 0.0)
    whatif_errors: dict[str, str] = {}
    for round_ in range(rounds):
        for side, fn in sides if round_ % 2 == 0 else sides[::-1]:
            purge_broker(broker_redis())
            try:
                rate = n / timed(fn)
                expect_queued(n, side)
            except Exception as exc:
                if side in ("raw", "taskkit"):
                    raise
                whatif_errors[side] = f"{type(exc).__name__}: {exc}"
                continue
            best[side] = max(best[side], rate)
    ratio = best["taskkit"] / best["raw"]

    def whatif(side: str, metric: str, note: str) -> Row:
        if side in whatif_errors:
            return Row("2 bulk", metric, "/s", None, None, note=f"failed: {whatif_errors[side]}")
        rate = best[side]
        return Row("2 bulk", metric, "/s", rate, None, ratio_override=rate / best["raw"], note=note)

    return [
        Row(
            "2 bulk",
            f"enqueue_many vs apply_async loop, N={n:,}",
            "/s",
            best["raw"],
            best["taskkit"],
            target="ratio >= 20",
            passed=ratio >= 20,
            note=(
                f"best of {rounds} round(s); taskkit {n / best['taskkit']:.2f} s "
                f"vs raw {n / best['raw']:.2f} s for {n:,} messages"
            ),
        ),
        whatif(
            "batched",
            "what-if: raw loop in kombu Producer.batch",
            "not taskkit: raw apply_async over one producer inside Producer.batch(1000), "
            "i.e. pipelined LPUSH but Celery's per-message work kept; ratio against the raw loop",
        ),
    ]


# -- 3. drain rate ----------------------------------------------------------------------------

#: The draining workers keep their database connections across tasks (Celery's
#: ``CELERY_DB_REUSE_MAX``, as the production how-to recommends): without it, Celery's
#: Django fixup closes them around every task, whatever ``CONN_MAX_AGE`` says. Both sides
#: get it; raw Celery's task does not use the database.
DRAIN_ENV = {"TASKKIT_TEST_DB_REUSE_MAX": "1000"}


def bench_drain(cfg: Config) -> list[Row]:
    """Everything enqueued first, then one worker (threads, 4) runs it all."""
    n = cfg.drain_n
    payloads = [payload(i) for i in range(n)]
    client = broker_redis()
    timeout = 300.0

    def raw_round() -> Progress:
        # raw Celery: a task that INCRs a counter and returns its payload, as echo does.
        clean_slate()
        with app.producer_or_acquire() as producer:
            for p in payloads:
                count.apply_async(kwargs=p, producer=producer)
        expect_queued(n, "raw")
        with Worker("raw-drain", cfg.tmp, extra_env=DRAIN_ENV) as worker:
            return follow(lambda: int(client.get(COUNT_KEY) or 0), n, timeout, [worker], POLL)

    def taskkit_round(level: str = "") -> Progress:
        # taskkit: echo:payload, done when its row says succeeded; track="all": rows first.
        from django.conf import settings
        from django.test import override_settings

        clean_slate()
        with override_settings(TASKKIT={**settings.TASKKIT, "TRACK": level or "runs"}):
            taskkit.enqueue_many(TASK, payloads)
        expect_queued(n, "taskkit")
        env = {**DRAIN_ENV, **({"TASKKIT_TEST_TRACK": level} if level else {})}
        with Worker(f"taskkit-drain{level}", cfg.tmp, extra_env=env) as worker:
            return follow(succeeded, n, timeout, [worker], POLL)

    rounds = 2 if cfg.quick else 3
    raw_runs, tk_runs, all_runs = [], [], []
    for round_ in range(rounds):  # interleaved, so a busy spell of the machine hits all
        if round_ % 2 == 0:
            raw_runs.append(raw_round())
            tk_runs.append(taskkit_round())
            all_runs.append(taskkit_round("all"))
        else:
            all_runs.append(taskkit_round("all"))
            tk_runs.append(taskkit_round())
            raw_runs.append(raw_round())
    raw = max(raw_runs, key=lambda followed: followed.rate)
    tk = max(tk_runs, key=lambda followed: followed.rate)
    every = max(all_runs, key=lambda followed: followed.rate)
    failed = TaskRun.objects.exclude(status=RunStatus.SUCCEEDED).count()
    ratio = tk.rate / raw.rate
    return [
        Row(
            "3 drain",
            f"drain rate, N={n:,}, -P threads -c 4",
            "/s",
            raw.rate,
            tk.rate,
            target="ratio >= 0.9",
            passed=ratio >= 0.9,
            note=(
                f"best of {rounds} interleaved rounds per side; "
                "counted from the first completion seen to the last (50 ms polls), so worker "
                "start-up is left out; both tasks return their payload; raw counts a Redis "
                "INCR per task, taskkit TaskRun rows "
                "with status succeeded; both workers keep their database connections "
                f"(CELERY_DB_REUSE_MAX){f'; {failed} rows not succeeded' if failed else ''}"
            ),
        ),
        Row(
            "3 drain",
            "wall time from worker start to all done",
            "s",
            raw.wall,
            tk.wall,
        ),
        Row(
            "3 drain",
            f'drain rate, track="all", N={n:,}',
            "/s",
            raw.rate,
            every.rate,
            target="ratio >= 0.9",
            passed=every.rate / raw.rate >= 0.9,
            note="rows written before sending (enqueue_many at track='all'), the worker at "
            "track='all': the claim (the running row) and the final row per run, each at once",
        ),
    ]


# -- 4. delayed start latency -------------------------------------------------------------------


def bench_delayed(cfg: Config) -> list[Row]:
    """``enqueue_in`` runs spread over 3 s, promoted by the taskkit Beat scheduler."""
    n = cfg.delayed_n
    delays = [1.0 + 3.0 * i / (n - 1) for i in range(n)]
    client = broker_redis()

    # taskkit: rows promoted by taskkit.scheduler:Scheduler in the worker's embedded Beat.
    clean_slate()
    with Worker("taskkit-delayed", cfg.tmp, beat=True) as worker:
        taskkit_ready(worker)
        for i, delay in enumerate(delays):
            taskkit.enqueue_in(TASK, delay, payload(i))
        follow(succeeded, n, 60 + max(delays), [worker], poll=0.05)
    times = TaskRun.objects.values_list("started_at", "scheduled_for")
    tk = [(started - due).total_seconds() for started, due in times if started and due]
    if len(tk) != n:
        raise BenchError(f"taskkit: {len(tk)} of {n} delayed runs have both timestamps")

    # raw Celery: ETA messages the worker holds until due; the task reports its lateness.
    clean_slate()
    with Worker("raw-delayed", cfg.tmp) as worker:
        raw_ready(worker)
        with app.producer_or_acquire() as producer:
            for i, delay in enumerate(delays):
                due = time.time() + delay
                stamp.apply_async(
                    kwargs={"due": due, **payload(i)},
                    eta=datetime.fromtimestamp(due, UTC),
                    producer=producer,
                )
        follow(lambda: int(client.llen(LATENCY_KEY)), n, 60 + max(delays), [worker], poll=0.05)
    raw = [float(value) for value in client.lrange(LATENCY_KEY, 0, -1)]

    p95 = percentile(tk, 95)
    return [
        Row("4 delayed", f"start latency p50, N={n}", "s", percentile(raw, 50), percentile(tk, 50)),
        Row(
            "4 delayed",
            f"start latency p95, N={n}",
            "s",
            percentile(raw, 95),
            p95,
            target="taskkit p95 < 1 s",
            passed=p95 < 1.0,
            note=(
                "taskkit: TaskRun.started_at - scheduled_for, enqueue_in 1-4 s, worker -B "
                "--scheduler taskkit.scheduler:Scheduler; raw: apply_async(eta=...) held by "
                "the worker, lateness taken in the task body"
            ),
        ),
        Row("4 delayed", "start latency max", "s", max(raw), max(tk)),
    ]


# -- 5. worker RSS with pending delayed runs ------------------------------------------------------


def bench_rss(cfg: Config) -> list[Row]:
    """Worker memory while many delayed runs wait: taskkit's rows vs Celery's ETA messages."""
    n = cfg.rss_n
    client = broker_redis()

    # raw Celery: countdown=3600 messages are fetched and held by the worker until due.
    clean_slate()
    with Worker("raw-rss", cfg.tmp) as worker:
        raw_ready(worker)
        time.sleep(cfg.settle)
        raw_idle, _ = worker.rss_mib()
        started = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for i in range(n):
                noop.apply_async(kwargs=payload(i), countdown=3600, producer=producer)
        wait_until(
            lambda: queued(client) == 0, 600, f"the worker to fetch {n:,} ETA tasks", [worker]
        )
        fetched_in = time.perf_counter() - started
        held = int(client.hlen("unacked"))
        time.sleep(cfg.settle)
        raw_loaded, raw_procs = worker.rss_mib()
        raw_pss = worker.pss_mib()
    clean_slate()  # the worker's warm shutdown put the unacked messages back

    # taskkit: rows due in an hour, in the table before worker + Beat start.
    with Worker("taskkit-rss-idle", cfg.tmp, beat=True) as worker:
        taskkit_ready(worker)
        time.sleep(cfg.settle)
        tk_idle, _ = worker.rss_mib()
    due = timezone.now() + timedelta(hours=1)
    with transaction.atomic():
        TaskRun.objects.bulk_create(
            (
                TaskRun(
                    name=TASK,
                    queue="default",
                    payload=payload(i),
                    status=RunStatus.SCHEDULED,
                    scheduled_for=due,
                )
                for i in range(n)
            ),
            batch_size=2_000,
        )
    with Worker("taskkit-rss", cfg.tmp, beat=True) as worker:
        taskkit_ready(worker)
        time.sleep(cfg.settle)
        tk_loaded, tk_procs = worker.rss_mib()
        tk_pss = worker.pss_mib()
    pending = TaskRun.objects.filter(status=RunStatus.SCHEDULED).count()
    clean_slate()
    return [
        Row("5 memory", "worker RSS, idle", "MiB", raw_idle, tk_idle),
        Row(
            "5 memory",
            f"worker RSS, {n:,} pending delayed runs",
            "MiB",
            raw_loaded,
            tk_loaded,
            note=(
                f"VmRSS summed over the worker's process tree ({raw_procs} raw, {tk_procs} "
                f"taskkit: worker + embedded Beat), read {cfg.settle:.0f} s after loading; "
                f"raw worker fetched {n:,} countdown=3600 tasks in {fetched_in:.1f} s and "
                f"held {held:,} unacked ({raw_loaded - raw_idle:+,.1f} MiB); taskkit kept "
                f"{pending:,} scheduled rows in the database ({tk_loaded - tk_idle:+,.1f} MiB); "
                f"PSS (forked Beat's shared pages counted once): raw {raw_pss:,.1f} MiB, "
                f"taskkit {tk_pss:,.1f} MiB"
            ),
        ),
    ]


# -- 6. admin pages over a deep queue ---------------------------------------------------------


def _best_of(rounds: int, fn: Callable[[], object]) -> float:
    return min(timed(fn) for _ in range(rounds))


def _run_rows(n: int) -> str:
    """``n`` finished runs over the last day (one in ten failed); the id of one of them."""
    from datetime import timedelta

    from django.utils import timezone

    from taskkit.models import RunStatus, TaskRun

    now = timezone.now()
    rows = []
    for i in range(n):
        done = now - timedelta(seconds=86_400 * i / n)
        rows.append(
            TaskRun(
                name=TASK,
                payload=payload(i),
                status=RunStatus.FAILED if i % 10 == 0 else RunStatus.SUCCEEDED,
                error="ValueError: bench" if i % 10 == 0 else "",
                created_at=done - timedelta(seconds=2),
                started_at=done - timedelta(seconds=1),
                finished_at=done,
            )
        )
    TaskRun.objects.bulk_create(rows, batch_size=5_000)
    return str(rows[n // 2].pk)


def bench_admin(cfg: Config) -> list[Row]:
    """The admin's pages over 1,000,000 queued messages (Redis) and 100,000 run rows.

    There is no such page in Celery: the raw side is the least any page needs,
    ``LLEN`` and one ``LRANGE`` of 50 messages with redis-py.
    """
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    n = cfg.admin_n
    for start in range(0, n, 50_000):
        taskkit.enqueue_many(TASK, [payload(i) for i in range(start, min(start + 50_000, n))])
    expect_queued(n, "taskkit")
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", password="bench"
    )
    client = Client()
    client.force_login(user)
    redis = broker_redis()
    last = -(-n // 50)

    def get(url: str) -> None:
        response = client.get(url)
        if response.status_code != 200:
            raise BenchError(f"GET {url}: {response.status_code}")

    def raw() -> None:
        redis.llen(QUEUE)
        redis.lrange(QUEUE, -50, -1)

    run_rows = n // 10
    some_run = _run_rows(run_rows)
    queue_url = reverse("admin:taskkit_queue", args=[QUEUE])
    dashboard = reverse("admin:taskkit_dashboard_changelist")
    runs = reverse("admin:taskkit_taskrun_changelist")
    pages = [
        ("dashboard (charts: last hour)", dashboard),
        ("dashboard (charts: last day)", f"{dashboard}?window=day"),
        ("queue browser, first page", queue_url),
        ("queue browser, last page", f"{queue_url}?page={last}"),
        (f"runs list ({run_rows:,} rows)", runs),
        ("runs list, search by short id", f"{runs}?q={some_run[:8]}"),
        ("runs list, search by payload", f"{runs}?q=%22n%22%3A+{run_rows // 3}%2C"),
        ("a run's page", reverse("admin:taskkit_taskrun_change", args=[some_run])),
    ]
    raw_time = _best_of(5, raw)
    rows = []
    for label, url in pages:
        took = _best_of(3, lambda url=url: get(url))  # type: ignore[misc]
        rows.append(
            Row(
                "6 admin",
                f"{label}, {n:,} queued",
                "s",
                raw_time,
                took,
                target="< 0.5 s",
                passed=took < 0.5,
                note="raw: LLEN + LRANGE of 50 with redis-py; best of 3 page loads",
            )
        )
    return rows


# -- 7. queue inspection and deletes ---------------------------------------------------------

#: The payload ``delete`` looks for: one message in a hundred of the delete queue carries it.
TARGET = {"user": "target", "n": -1}
DELETE_QUEUE = "bench-delete"

#: What the inspecting process does, in a process of its own so its peak RSS is its own.
_INSPECTOR = """
import re, sys
sys.path.insert(0, {repo!r})
import django
django.setup()
from bench.celery_app import app
app.set_current()
from taskkit import queues
queues.find("echo:payload", {{"user": "nobody"}})  # every message of every queue, sieved
queues.list({queue!r}, {tail}, {tail} + 49)
status = open("/proc/self/status").read()  # VmHWM: this process's own peak (not ru_maxrss,
print(int(re.search(r"VmHWM:\\s+(\\d+)", status).group(1)) / 1024)  # which counts its parent's)
"""


def _fill(queue: str, payloads: Callable[[int], dict[str, Any]], n: int) -> None:
    for start in range(0, n, 50_000):
        taskkit.enqueue_many(
            TASK, [payloads(i) for i in range(start, min(start + 50_000, n))], queue=queue
        )


def _full_scan(queue: str) -> None:
    """What any look at every message costs at least: LRANGE through the list, 1,000 at a time."""
    redis = broker_redis()
    size = int(redis.llen(queue))
    for start in range(0, size, 1_000):
        redis.lrange(queue, start, start + 999)


def _inspector_rss(tail: int) -> float:
    code = _INSPECTOR.format(repo=str(Path(__file__).resolve().parents[1]), queue=QUEUE, tail=tail)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=900
    )
    if done.returncode:
        raise BenchError(f"the inspecting process failed: {done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def bench_inspect(cfg: Config) -> list[Row]:
    """``taskkit.queues`` over 1,000,000 queued messages, and a delete across 100,000 (Redis).

    No Celery tool lists or deletes single messages; the raw side is the least
    Redis work each answer needs, done with redis-py.
    """
    from taskkit import queues

    n, m = cfg.admin_n, cfg.delete_n
    _fill(QUEUE, payload, n)
    expect_queued(n, "taskkit")
    redis = broker_redis()
    deepest = queues.list(QUEUE, n - 1, n - 1)[0].run_id  # the message a worker takes last
    checks: list[tuple[str, Callable[[], object], Callable[[], object], str]] = [
        ("details()", queues.details, lambda: redis.llen(QUEUE), "LLEN"),
        (
            "list, first page",
            lambda: queues.list(QUEUE, 0, 49),
            lambda: redis.lrange(QUEUE, -50, -1),
            "LRANGE of 50",
        ),
        (
            "list, last page",
            lambda: queues.list(QUEUE, n - 50, n - 1),
            lambda: redis.lrange(QUEUE, 0, 49),
            "LRANGE of 50",
        ),
    ]
    rows = []
    for label, ours, raw, what in checks:
        took, raw_took = _best_of(3, ours), _best_of(5, raw)
        rows.append(
            Row(
                "7 inspect",
                f"{label}, {n:,} queued",
                "s",
                raw_took,
                took,
                target="< 0.1 s",
                passed=took < 0.1,
                note=f"raw: {what} with redis-py; best of 3",
            )
        )
    raw_took = took = float("inf")
    last = redis.lindex(QUEUE, 0)  # the message a worker takes last, put back after each round
    if last is None:
        raise BenchError(f"{QUEUE} is empty")
    for _ in range(cfg.rounds):  # interleaved, the best of each side kept
        raw_took = min(raw_took, timed(lambda: _full_scan(QUEUE)))
        took = min(took, timed(lambda: queues.delete_run(deepest)))
        if queued(redis) != n - 1 or redis.lindex(QUEUE, 0) == last:
            raise BenchError("delete_run did not remove exactly that message")
        redis.lpush(QUEUE, last)
    rows.append(
        Row(
            "7 inspect",
            f"delete_run of the last of {n:,}",
            "s",
            raw_took,
            took,
            target="<= 1.2x the scan",
            passed=took <= 1.2 * raw_took,
            note="raw: one full LRANGE scan, 1,000 at a time; the run id is sieved undecoded; "
            "best of interleaved rounds (the message put back at the far end after each)",
        )
    )
    rss = _inspector_rss(n - 51)
    rows.append(
        Row(
            "7 inspect",
            f"inspecting process peak RSS, find() over {n:,}",
            "MiB",
            None,
            rss,
            target="< 200 MiB",
            passed=rss < 200,
            note="VmHWM of a fresh process: django.setup(), find() across every queue, a list",
        )
    )
    redis.delete(QUEUE)

    raw_took = took = float("inf")
    _fill(DELETE_QUEUE, lambda i: TARGET if i % 100 == 0 else payload(i), m)
    kept = f"{DELETE_QUEUE}:kept"
    redis.copy(DELETE_QUEUE, kept)  # each round deletes from the same list, copied back
    for _ in range(cfg.delete_rounds):  # interleaved, the best of each side kept
        redis.copy(kept, DELETE_QUEUE, replace=True)
        raw_took = min(raw_took, timed(lambda: _full_scan(DELETE_QUEUE)))
        took = min(took, timed(lambda: queues.delete(DELETE_QUEUE, TASK, TARGET)))
        left = int(redis.llen(DELETE_QUEUE))
        if left != m - m // 100:
            raise BenchError(f"delete left {left:,} of {m:,} messages, not {m - m // 100:,}")
    redis.delete(DELETE_QUEUE, kept)
    rows.append(
        Row(
            "7 inspect",
            f"delete by name + payload, {m // 100:,} of {m:,}",
            "s",
            raw_took,
            took,
            target="<= 1.5x the scan",
            passed=took <= 1.5 * raw_took,
            note="raw: one full LRANGE scan, 1,000 at a time; best of "
            f"{cfg.delete_rounds} interleaved rounds, each on a copy of the same list",
        )
    )
    return rows


# -- 8. scale model: round trips per run --------------------------------------------------------

#: The track levels, the project default first.
LEVELS = ("runs", "failures", "all")
#: Targets at steady state for the default level, per run.
SQL_TARGET = 0.1
BROKER_TARGET = 1.1


def _per_run(before: Counts, after: Counts, n: int) -> tuple[float, float, float]:
    spent = after - before
    return spent.sql / n, spent.connects / n, spent.redis / n


def _sending(level: str, n: int, send: Callable[[int], None]) -> tuple[float, float, float]:
    """Round trips per run of ``send(n)`` in this process at ``level``, after a warm-up."""
    from django.conf import settings
    from django.test import override_settings

    with override_settings(TASKKIT={**settings.TASKKIT, "TRACK": level}):
        send(50)  # warm-up: connections, declarations, known queues
        roundtrips.watch_open_connections()
        before = roundtrips.snapshot()
        send(n)
        after = roundtrips.snapshot()
    purge_broker(broker_redis())
    TaskRun.objects.all().delete()
    return _per_run(before, after, n)


def _worker_total(
    cfg: Config, label: str, level: str, n: int, fill: Callable[[int], None]
) -> Counts:
    """A fresh worker's round trips, start to exit, for ``n`` queued runs."""
    from django.conf import settings
    from django.test import override_settings

    clean_slate()
    with override_settings(TASKKIT={**settings.TASKKIT, "TRACK": level}):
        fill(n)  # track="all": the rows the worker claims
    path = cfg.tmp / f"counts-{label}-{n}.json"
    env = {roundtrips.COUNT_FILE: str(path), "TASKKIT_TEST_TRACK": level}

    def ran() -> int:
        return roundtrips.read(path).runs if path.exists() else 0

    with Worker(label, cfg.tmp, extra_env=env) as worker:
        follow(ran, n, 300, [worker], POLL)
    return roundtrips.read(path)


def _working(
    cfg: Config, label: str, level: str, fill: Callable[[int], None]
) -> tuple[float, float, float]:
    """A worker's round trips per run at steady state: the difference between a short and a
    long drain, so start-up and shutdown cancel out."""
    short, extra = 100, cfg.scale_n
    small = _worker_total(cfg, label, level, short, fill)
    large = _worker_total(cfg, label, level, short + extra, fill)
    return _per_run(small, large, extra)


def _paced(cfg: Config, level: str, rate: float, seconds: float) -> tuple[float, float, float]:
    """A running worker's round trips per run while runs arrive at ``rate`` a second: what a
    cluster whose every worker process is that busy costs, idle polling and heartbeats in."""
    from django.conf import settings
    from django.test import override_settings

    clean_slate()
    path = cfg.tmp / f"counts-paced-{level}.json"
    env = {roundtrips.COUNT_FILE: str(path), "TASKKIT_TEST_TRACK": level}

    def ran() -> int:
        return roundtrips.read(path).runs if path.exists() else 0

    total = int(rate * seconds)
    with (
        Worker(f"paced-{level}", cfg.tmp, extra_env=env) as worker,
        override_settings(TASKKIT={**settings.TASKKIT, "TRACK": level}),
    ):
        taskkit.enqueue(TASK, payload(-1))
        follow(ran, 1, 90, [worker], POLL)
        time.sleep(1.0)  # the first run's rows written
        before = roundtrips.read(path)
        began = time.perf_counter()
        for i in range(total):
            time.sleep(max(0.0, began + i / rate - time.perf_counter()))
            taskkit.enqueue(TASK, payload(i))
        follow(ran, before.runs + total, 90, [worker], POLL)
        time.sleep(1.0)  # the last rows written, the totals in the file
        after = roundtrips.read(path)
    return _per_run(before, after, total)


def bench_scale(cfg: Config) -> list[Row]:
    """Database and broker round trips per run, counted, for every track level.

    Counted, not timed (see ``bench/roundtrips.py``): in this process for the sending side,
    in the worker (threads, 4) for the running side. Raw Celery's figures are in the raw
    column; a database column for it is always 0.
    """
    from django.db import transaction

    roundtrips.install()
    n = cfg.scale_n

    def raw_send(k: int) -> None:
        for i in range(k):
            noop.apply_async(kwargs=payload(i))

    def one_by_one(k: int) -> None:
        for i in range(k):
            taskkit.enqueue(TASK, payload(i))

    def in_bulk(k: int) -> None:
        taskkit.enqueue_many(TASK, [payload(i) for i in range(k)])

    def in_request(k: int) -> None:  # a view's transaction: sent after commit
        with transaction.atomic():
            for i in range(k):
                taskkit.enqueue(TASK, payload(i))

    def raw_fill(k: int) -> None:
        with app.producer_or_acquire() as producer:
            for i in range(k):
                noop.apply_async(kwargs=payload(i), producer=producer)

    clean_slate()
    raw_sent = _sending("runs", n, raw_send)
    raw_worked = _working(cfg, "raw-scale", "runs", raw_fill)
    rows = []
    for level in LEVELS:
        default = level == LEVELS[0]
        sides = [
            ("enqueue", raw_sent, _sending(level, n, one_by_one)),
            ("enqueue in a transaction", raw_sent, _sending(level, n, in_request)),
            ("enqueue_many", raw_sent, _sending(level, n, in_bulk)),
            ("worker", raw_worked, _working(cfg, f"scale-{level}", level, in_bulk)),
        ]
        if default:
            rate = 50.0
            sides.append(
                (f"worker at {rate:.0f} runs/s", raw_worked, _paced(cfg, level, rate, 10.0))
            )
        for side, raw, ours in sides:
            sql, connects, broker = ours
            checked = default and side != "enqueue_many" and "transaction" not in side
            sql_ok, broker_ok = sql <= SQL_TARGET, broker - raw[2] <= BROKER_TARGET - 1
            rows += [
                Row(
                    "8 scale",
                    f"track={level}: {side}, SQL / run",
                    "/run",
                    raw[0],
                    sql,
                    target=f"<= {SQL_TARGET}" if checked else "",
                    passed=sql_ok if checked else None,
                    note=f"connections opened / run: {connects:.4f} (raw {raw[1]:.4f})"
                    if side.startswith("worker")
                    else "",
                ),
                Row(
                    "8 scale",
                    f"track={level}: {side}, broker / run",
                    "/run",
                    raw[2],
                    broker,
                    target="<= raw + 0.1" if checked else "",
                    passed=broker_ok if checked else None,
                ),
            ]
    rows[-1].note = (
        f"round trips counted, not timed: SQL statements through Django, Redis writes of a "
        f"command or pipeline (redis-py send_packed_command); sending side: {n:,} runs after "
        f"50 warm-up in the bench process; worker (-P threads -c 4): a drain of "
        f"{100 + n:,} minus a drain of 100, so start-up and shutdown cancel out; "
        f"'worker at 50 runs/s': a running worker's counts over 500 runs enqueued one "
        f"by one at that pace, idle polling and heartbeats included"
    )
    return rows


BENCHMARKS: list[tuple[str, Callable[[Config], list[Row]]]] = [
    ("1 enqueue", bench_enqueue),
    ("2 bulk", bench_bulk),
    ("3 drain", bench_drain),
    ("4 delayed", bench_delayed),
    ("5 memory", bench_rss),
    ("6 admin", bench_admin),
    ("7 inspect", bench_inspect),
    ("8 scale", bench_scale),
]
