"""PostgreSQL goes away under a worker running tasks: every run still runs, every row ends right.

The worker reaches a private database through a proxy. While runs are in flight
every database connection is reset and new ones are refused for a few seconds,
then the database comes back. A ledger keeps the run ids whose enqueue returned
(the enqueuing process reaches the database directly); every run counts itself
(``echo:count``). Afterwards every run has run, and its row says ``succeeded``:
none is left ``queued`` or ``running``, none is missing. Once with the default
``track="runs"`` (rows written by the worker's recorder thread), once with
``track="all"`` (rows written at enqueue, updated by the run itself), and once
away for longer than the worker waits for it (``DATABASE_WAIT``, shortened to
2 s): the runs that could not start hand their messages back to the broker.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.apps.nested.tasks.echo.count import COUNTS_URL
from tests.integration.conftest import REPO, stop

from .conftest import PrivateRedis
from .postgres import on_postgres, postgres
from .processes import alive_until, environment
from .proxy import Proxy

pytestmark = [pytest.mark.reliability]
RUNS = 200
OUTAGE = 3.0  # seconds without the database
TIMEOUT = 45

ENQUEUE = """
import sys
import django
django.setup()
from tests.celery_app import app  # the broker of TASKKIT_TEST_BROKER, not Celery's default
app.set_current()
app.set_default()
import taskkit
key, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(start, stop):
    print(taskkit.enqueue("echo:count", {"key": key, "i": i}).id, flush=True)
"""


def on_database(
    database: str, port: int, broker: str, track: str, wait: float = 30.0
) -> dict[str, str]:
    return environment(
        broker,
        **on_postgres(database, port),
        TASKKIT_TEST_TRACK=track,
        TASKKIT_TEST_DATABASE_WAIT=str(wait),
    )


def enqueue(env: dict[str, str], key: str, start: int, stop: int) -> list[str]:
    """Enqueue runs ``start`` to ``stop`` in a process of their own; their run ids."""
    done = subprocess.run(
        [sys.executable, "-c", ENQUEUE, key, str(start), str(stop)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.split()


def statuses(database: str, run_ids: list[str]) -> dict[str, str]:
    with postgres(database) as db:
        rows = db.execute(
            "SELECT id::text, status FROM taskkit_taskrun WHERE id = ANY(%s::uuid[])", [run_ids]
        ).fetchall()
    return {str(run_id): str(status) for run_id, status in rows}


@pytest.mark.parametrize(
    ("track", "outage", "wait"),
    [("runs", OUTAGE, 30.0), ("all", OUTAGE, 30.0), ("all", 8.0, 2.0)],
    ids=["runs", "all", "all-longer-than-the-wait"],
)
def test_the_database_away_mid_run_loses_no_run_and_no_row(
    track: str,
    outage: float,
    wait: float,
    database: str,
    private_redis: PrivateRedis,
    tmp_path: Path,
) -> None:
    key = f"counts:{uuid.uuid4()}"
    proxy = Proxy("127.0.0.1", 5432)
    log = (tmp_path / "worker.log").open("w")
    direct = on_database(database, 5432, private_redis.url, track)
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
            "-Q", "default", "-P", "threads", "-c", "4", "-l", "warning",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"away-{uuid.uuid4().hex[:6]}@%h",
        ],
        cwd=REPO, env=on_database(database, proxy.port, private_redis.url, track, wait), text=True,
        start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    counts = redis.Redis.from_url(COUNTS_URL, decode_responses=True)
    try:
        sent = enqueue(direct, key, 0, RUNS // 2)
        alive_until(  # the worker is running them
            [worker], lambda: counts.llen(key) >= 10, TIMEOUT, lambda: "the worker ran nothing"
        )
        proxy.down()
        cut = proxy.cut()
        sent += enqueue(direct, key, RUNS // 2, RUNS)  # in flight while the database is away
        time.sleep(outage)
        proxy.up()
        deadline = time.monotonic() + TIMEOUT
        while True:
            ran = counts.lrange(key, 0, -1)
            rows = statuses(database, sent)
            settled = [status for status in rows.values() if status == "succeeded"]
            if (set(sent) <= set(ran) and len(settled) == len(sent)) or (
                time.monotonic() > deadline or worker.poll() is not None
            ):
                break
            time.sleep(0.2)
        alive = worker.poll() is None
    finally:
        stop(worker)
        log.close()
        proxy.close()
        counts.delete(key)
        counts.close()
    lost = set(sent) - set(ran)
    by_status: dict[str, int] = {}
    for status in rows.values():
        by_status[status] = by_status.get(status, 0) + 1
    figures = (
        f"track={track}: enqueued {len(sent)}, ran {len(set(ran))}, lost {len(lost)}, "
        f"duplicated {len(ran) - len(set(ran))}; rows {by_status}, missing "
        f"{len(set(sent) - set(rows))}; {cut} database connections cut, {proxy.refused} refused"
    )
    print(figures)
    figures += "\n" + (tmp_path / "worker.log").read_text()[-3000:]
    assert alive, f"the worker died: {figures}"
    assert cut + proxy.refused > 0, f"the worker never missed the database: {figures}"
    assert not lost, f"{len(lost)} runs never ran: {figures}"
    assert by_status == {"succeeded": len(sent)}, f"rows are not all succeeded: {figures}"
