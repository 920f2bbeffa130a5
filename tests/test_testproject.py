"""The demo project, driven as a user would: ``manage.py`` in a subprocess."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent / "testproject"


@pytest.fixture
def manage(tmp_path: Path) -> list[str]:
    return [sys.executable, str(PROJECT / "manage.py")]


def demo_env(tmp_path: Path) -> dict[str, str]:
    """The demo's environment with its database and broker folder in ``tmp_path``."""
    env = {
        **os.environ,
        "TESTPROJECT_SQLITE_PATH": str(tmp_path / "demo.sqlite3"),
        "TESTPROJECT_BROKER_FOLDER": str(tmp_path / "broker"),
        # this checkout's taskkit, not the one installed (another checkout, if editable)
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PROJECT.parent), os.environ.get("PYTHONPATH")])
        ),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def run(
    command: list[str] | str,
    tmp_path: Path,
    *,
    shell: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=PROJECT,
        env=env or demo_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        shell=shell,
        check=False,
    )


def test_runtask_db_migrate_migrates_the_database(manage: list[str], tmp_path: Path) -> None:
    done = run([*manage, "runtask", "db:migrate", "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"migrated": True}
    seeded = run([*manage, "runtask", "db:seed", "--payload", '{"users": 2}', "--json"], tmp_path)
    assert json.loads(seeded.stdout) == {"created": 2, "total": 2}, seeded.stderr
    again = run([*manage, "runtask", "db:seed", "--payload", '{"users": 2}', "--json"], tmp_path)
    assert json.loads(again.stdout) == {"created": 0, "total": 2}


def test_runtask_echo_payload_json(manage: list[str], tmp_path: Path) -> None:
    done = run([*manage, "runtask", "echo:payload", "--payload", '{"a": 1}', "--json"], tmp_path)
    assert (done.returncode, done.stdout) == (0, '{"a": 1}\n')


def test_async_and_progress_tasks(manage: list[str], tmp_path: Path) -> None:
    waited = run(
        [*manage, "runtask", "echo:wait", "--payload", '{"seconds": 0.01}', "--json"], tmp_path
    )
    assert json.loads(waited.stdout)["waited"] == 0.01, waited.stderr
    built = run(
        [*manage, "runtask", "reports:build", "--payload", '{"steps": 2, "pause": 0}'], tmp_path
    )
    assert json.loads(built.stdout) == {"steps": 2}, built.stderr


def test_failing_task_exits_non_zero_and_stops_a_chain(manage: list[str], tmp_path: Path) -> None:
    python, script = manage
    chain = f"'{python}' '{script}' runtask reports:fail && '{python}' '{script}' runtask cms:ping"
    done = run(chain, tmp_path, shell=True)
    assert done.returncode == 1
    assert "ReportError: the report for this month is broken" in done.stderr
    assert "pong" not in done.stdout


def test_chain_runs_every_task_when_all_succeed(manage: list[str], tmp_path: Path) -> None:
    python, script = manage
    chain = f"'{python}' '{script}' runtask cms:ping && '{python}' '{script}' runtask echo:payload"
    done = run(chain, tmp_path, shell=True)
    assert (done.returncode, done.stdout) == (0, "pong\n{}\n"), done.stderr


@pytest.mark.parametrize("payload", ["{bad", "[1]", "42"])
def test_bad_payload_exits_2_without_running(
    manage: list[str], tmp_path: Path, payload: str
) -> None:
    done = run([*manage, "runtask", "db:migrate", "--payload", payload], tmp_path)
    assert done.returncode == 2
    assert "payload" in done.stderr
    assert not (tmp_path / "demo.sqlite3").exists() or "taskkit" not in done.stdout


def test_unknown_task_lists_close_matches(manage: list[str], tmp_path: Path) -> None:
    done = run([*manage, "runtask", "db:migrat"], tmp_path)
    assert done.returncode == 2
    assert "Did you mean: db:migrate" in done.stderr


def test_listtasks_json_lists_the_demo_tasks(manage: list[str], tmp_path: Path) -> None:
    done = run([*manage, "listtasks", "--json"], tmp_path)
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert set(rows) >= {
        "db:migrate",
        "db:seed",
        "echo:payload",
        "echo:wait",
        "reports:fail",
        "reports:build",
        "cms:update",
        "cms:ping",
    }
    assert all(r["description"] for r in rows.values())
    assert (rows["cms:update"]["schedule"], rows["cms:update"]["cron"]) == (
        "Every 5 minutes",
        "*/5 * * * *",
    )


def test_demo_passes_system_checks(manage: list[str], tmp_path: Path) -> None:
    done = run([*manage, "check", "--fail-level", "WARNING"], tmp_path)
    assert done.returncode == 0, done.stderr


def test_ensure_admin_prints_a_login(manage: list[str], tmp_path: Path) -> None:
    assert run([*manage, "migrate", "--noinput"], tmp_path).returncode == 0
    first = run([*manage, "ensure_admin"], tmp_path)
    second = run([*manage, "ensure_admin"], tmp_path)
    assert "user: admin" in first.stdout and "password: " in first.stdout
    assert first.stdout != second.stdout  # a fresh password each time, the user kept
    assert "http://127.0.0.1:8000/admin/" in first.stdout
    elsewhere = run([*manage, "ensure_admin", "--address", "127.0.0.1:8123"], tmp_path)
    assert "http://127.0.0.1:8123/admin/" in elsewhere.stdout  # what `make run PORT=8123` prints


def test_sqlite_runs_in_wal_mode(manage: list[str], tmp_path: Path) -> None:
    code = "from django.db import connection; c = connection.cursor(); c.execute('PRAGMA journal_mode'); print(c.fetchone()[0])"
    done = run([*manage, "shell", "-c", code], tmp_path)
    assert done.stdout.split()[-1] == "wal", done.stderr


def test_worker_and_beat_run_queued_and_delayed_tasks(manage: list[str], tmp_path: Path) -> None:
    """The demo as `make run` starts it: taskworker '*' with Beat on the embedded broker."""
    assert run([*manage, "migrate", "--noinput"], tmp_path).returncode == 0
    env = demo_env(tmp_path)
    worker = subprocess.Popen(
        [
            *manage,
            "taskworker",
            "--queues",
            "*",
            "--beat",
            "--pool",
            "threads",
            "-c",
            "2",
            "-l",
            "warning",
        ],
        cwd=PROJECT,
        env=env,
        text=True,
    )
    try:
        now = run(
            [*manage, "runtask", "echo:payload", "--payload", '{"a": 1}', "--enqueue"],
            tmp_path,
            env=env,
        )
        later = run([*manage, "runtask", "db:seed", "--in", "0.5", "--json"], tmp_path)
        assert now.returncode == 0 and later.returncode == 0, now.stderr + later.stderr
        ids = [now.stdout.strip(), json.loads(later.stdout)["id"]]
        done = wait_for_runs(tmp_path / "demo.sqlite3", ids)
        assert done == {ids[0]: '{"a": 1}', ids[1]: '{"created": 3, "total": 3}'}
    finally:
        worker.terminate()
        worker.wait(30)


def wait_for_runs(database: Path, ids: list[str]) -> dict[str, str]:
    deadline = time.monotonic() + 60
    keys = [uuid.UUID(i).hex for i in ids]
    while time.monotonic() < deadline:
        with closing(sqlite3.connect(database)) as db:
            rows = db.execute(
                f"SELECT id, status, result FROM taskkit_taskrun WHERE id IN ({','.join('?' * len(keys))})",
                keys,
            ).fetchall()
        if len(rows) == len(keys) and all(status == "succeeded" for _, status, _ in rows):
            return {str(uuid.UUID(key)): result for key, _, result in rows}
        time.sleep(0.2)
    raise AssertionError(f"runs did not finish: {rows}")


def test_a_taskworker_prints_each_taskkit_line_once(manage: list[str], tmp_path: Path) -> None:
    """Django's LOGGING and Celery's root handler: a taskkit line is printed once, not twice."""
    assert run([*manage, "migrate", "--noinput"], tmp_path).returncode == 0
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [*manage, "taskworker", "-Q", "default", "-P", "threads", "-c", "1", "-l", "info"],
            cwd=PROJECT,
            env=demo_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        sent = run(
            [*manage, "runtask", "echo:payload", "--payload", '{"a": 1}', "--enqueue"], tmp_path
        )
        assert sent.returncode == 0, sent.stderr
        run_id = sent.stdout.strip()
        wait_for_runs(tmp_path / "demo.sqlite3", [run_id])
    finally:
        worker.terminate()
        worker.wait(30)
    lines = log.read_text().splitlines()
    assert len([line for line in lines if f"echo:payload {run_id} succeeded (" in line]) == 1
    (celerys,) = [line for line in lines if f"echo:payload[{run_id}] succeeded in " in line]
    assert celerys.endswith(": {'a': 1}")  # Celery's own line shows the result
