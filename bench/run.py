"""Benchmark taskkit against raw Celery on the local Redis: ``python bench/run.py [--quick]``.

Redis database 14 is flushed at the start; Django runs with ``tests.settings`` on a
fresh SQLite file in a temporary folder. Every benchmark measures raw Celery and
taskkit in the same run. A benchmark that fails prints its error and the others
still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import (  # noqa: E402 - needs the repository on sys.path
    BROKER_URL,
    REDIS_DB,
    Row,
    broker_redis,
    render_table,
    stop_all_workers,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller N (enqueue 1,000, drain 500, memory 20,000)"
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated benchmark numbers or names to run, e.g. 1,3 or drain",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (database, worker logs)"
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="run on a private database created on the local PostgreSQL (user postgres) "
        "and dropped at the end, instead of SQLite",
    )
    return parser.parse_args(argv)


def _postgres(database: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(host="127.0.0.1", user="postgres", dbname=database, autocommit=True)


def create_postgres() -> str:
    """A fresh private database on the local PostgreSQL; its name."""
    name = f"taskkit_bench_{uuid.uuid4().hex[:10]}"
    with _postgres() as server:
        server.execute(f'CREATE DATABASE "{name}"'.encode())
    return name


def drop_postgres(name: str) -> None:
    from django.db import connections

    connections.close_all()
    with _postgres() as server:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def configure(tmp: Path, postgres: str | None = None) -> None:
    """Environment, Django, database, and the Celery app taskkit publishes through.

    The database is a fresh SQLite file in ``tmp``, or the PostgreSQL database
    ``postgres``; the workers inherit the variables that say which.
    """
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["TASKKIT_TEST_BROKER"] = BROKER_URL
    os.environ["TASKKIT_TEST_BROKER_OPTIONS"] = "{}"
    os.environ["TASKKIT_TEST_SQLITE"] = str(tmp / "bench.sqlite3")
    if postgres:
        os.environ["TASKKIT_TEST_DATABASE"] = "postgres"
        os.environ["TASKKIT_TEST_PG_NAME"] = postgres
    else:
        os.environ.pop("TASKKIT_TEST_DATABASE", None)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)

    from bench.celery_app import app

    app.set_current()
    app.set_default()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every Worker's cleanup


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="taskkit-bench-"))
    errors: list[str] = []
    rows: list[Row] = []
    database = ""
    try:
        client = broker_redis()
        client.ping()
        client.flushdb()
        database = create_postgres() if args.postgres else ""
        configure(tmp, database or None)
        from bench.benchmarks import BENCHMARKS, Config, clean_slate

        cfg = Config(quick=args.quick, tmp=tmp)
        wanted = {part.strip() for part in (args.only or "").split(",") if part.strip()}
        where = f"PostgreSQL {database}" if database else f"SQLite {tmp / 'bench.sqlite3'}"
        print(
            f"taskkit benchmarks ({'quick' if args.quick else 'full'}): Redis db {REDIS_DB}, "
            f"{where}",
            flush=True,
        )
        for name, bench in BENCHMARKS:
            number, _, short = name.partition(" ")
            if wanted and not wanted & {number, short, name}:
                continue
            print(f"-- {name} ...", end=" ", flush=True)
            started = time.perf_counter()
            try:
                rows += bench(cfg)
            except Exception as exc:
                errors.append(name)
                print(f"ERROR after {time.perf_counter() - started:.1f} s", flush=True)
                print(f"   {type(exc).__name__}: {exc}", flush=True)
                traceback.print_exc(file=sys.stderr)
            else:
                print(f"done in {time.perf_counter() - started:.1f} s", flush=True)
            finally:
                stop_all_workers()
                try:
                    clean_slate()
                except Exception as exc:
                    print(f"   cleanup failed: {type(exc).__name__}: {exc}", flush=True)
    except KeyboardInterrupt:
        errors.append("interrupted")
    except Exception as exc:  # setup: Redis away, Django or migrations broken
        errors.append("setup")
        print(f"setup failed: {type(exc).__name__}: {exc}", flush=True)
        traceback.print_exc(file=sys.stderr)
    finally:
        stop_all_workers()
        if database:
            try:
                drop_postgres(database)
            except Exception as exc:
                print(f"could not drop {database}: {type(exc).__name__}: {exc}", flush=True)

    print()
    if rows:
        print(render_table(rows))
        print()
    elapsed = time.perf_counter() - began
    print(f"Total time: {elapsed:.1f} s ({elapsed / 60:.1f} min)")
    if errors:
        print(f"Errored: {', '.join(errors)}; worker logs and database kept in {tmp}")
    elif args.keep:
        print(f"Kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
