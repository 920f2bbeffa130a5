"""A private PostgreSQL database on the shared server, for the tests that take it away.

The server itself is never stopped: a test reaches its database through a
:class:`~tests.reliability.proxy.Proxy` and cuts that.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from tests.integration.conftest import REPO

from .processes import environment


def postgres(database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host="127.0.0.1", user="postgres", dbname=database, autocommit=True)


def on_postgres(database: str, port: int) -> dict[str, str]:
    """The environment that puts the test settings on ``database``, reached on ``port``."""
    return {
        "TASKKIT_TEST_DATABASE": "postgres",
        "TASKKIT_TEST_PG_NAME": database,
        "TASKKIT_TEST_PG_PORT": str(port),
    }


@contextmanager
def private_database() -> Iterator[str]:
    """A database of its own, migrated; dropped afterwards (whoever still uses it)."""
    name = f"taskkit_rel_{uuid.uuid4().hex[:12]}"
    with postgres() as server:
        server.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate = [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"]
        env = environment("redis://", **on_postgres(name, 5432))  # migrate sends nothing
        subprocess.run(migrate, cwd=REPO, env=env, check=True, timeout=120)
        yield name
    finally:
        with postgres() as server:
            server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
