"""The subprocesses of the fault tests: their environment, starting them, waiting, killing.

Each is started in a process group of its own, so that ``stop`` (of the
integration tests) ends it and its children, and :func:`kill_group` kills them
all at once, as a crash or an OOM kill would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from tests.integration.conftest import REPO

#: ``manage.py`` of a project whose package imports its Celery app (Celery's Django
#: layout); the test settings have no such package, so the suite's app is imported first.
MANAGE = (
    "import sys, tests.celery_app; from django.core.management import execute_from_command_line; "
    "execute_from_command_line(['manage.py', *sys.argv[1:]])"
)


def environment(broker_url: str, **extra: str) -> dict[str, str]:
    """A subprocess's environment: the test settings on ``broker_url``, and ``extra``."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TASKKIT_TEST_BROKER": broker_url,
        "PYTHONPATH": str(REPO),
        **extra,
    }


def start_beat(broker_url: str) -> subprocess.Popen[str]:
    """A ``celery beat`` with taskkit's scheduler, on the test database; stop it with ``stop``."""
    command = [
        sys.executable, "-m", "celery", "-A", "tests.celery_app", "beat",
        "--scheduler", "taskkit.scheduler:Scheduler", "-s", os.devnull, "-l", "warning",
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=REPO, env=environment(broker_url), text=True, start_new_session=True
    )


def start_taskworker(env: dict[str, str], *options: str) -> subprocess.Popen[str]:
    """``manage.py taskworker`` with ``options``; stop it with ``stop``."""
    command = [sys.executable, "-c", MANAGE, "taskworker", *options, "--loglevel", "warning"]
    return subprocess.Popen(command, cwd=REPO, env=env, text=True, start_new_session=True)


def taskworker_name(process: subprocess.Popen[str]) -> str:
    """The node name a ``taskworker`` without ``-n`` gives itself."""
    return f"taskkit-{process.pid}@{socket.gethostname()}"


def alive_until(
    processes: Sequence[subprocess.Popen[str]],
    ready: Callable[[], object],
    timeout: float,
    failure: Callable[[], object],
) -> None:
    """Wait until ``ready()``; fail with ``failure()`` after ``timeout``, or once a process died."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert all(process.poll() is None for process in processes), [
            process.returncode for process in processes
        ]
        assert time.monotonic() < deadline, failure()
        time.sleep(0.05)


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL the process and its children: no release, no last heartbeat, no goodbye."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
