"""``manage.py taskworker``: a Celery worker for taskkit's queues, the plain Celery way.

``--queues '*'`` consumes every queue taskkit knows of (the actionhero ``*``
worker), and takes up the queues named after it started, within seconds
(:mod:`~taskkit.bridge.work.live_queues`); ``--concurrency`` is how many runs
are worked at once (plainweb's batch size); ``--beat`` embeds taskkit's Beat
scheduler, for development.
Each worker gets a node name of its own (``taskkit-<pid>@<host>`` unless
``--hostname`` says otherwise): two workers under one name on a host would
share a heartbeat (the sweep of lost workers could not tell them apart) and,
on RabbitMQ, a remote-control queue the second cannot take.

``--metrics-port`` serves the worker's run metrics (:mod:`taskkit.run_metrics`)
from its main process, summed over its pool processes through
``prometheus_client``'s multiprocess directory.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from celery import current_app
from django.core.management.base import BaseCommand, CommandError, CommandParser

from taskkit.bridge.send.known_queues import known_queues
from taskkit.bridge.work.live_queues import follow_known_queues
from taskkit.definition.names import validate_queue_name

SCHEDULER = "taskkit.scheduler:Scheduler"
#: Where each process of ``prometheus_client`` in multiprocess mode writes its values.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def default_hostname() -> str:
    """A node name unique to this process on this host (Celery expands ``%h``)."""
    return f"taskkit-{os.getpid()}@%h"


def worker_argv(
    queues: str,
    concurrency: int | None,
    beat: bool,
    pool: str | None,
    loglevel: str,
    hostname: str | None = None,
    *,
    task_events: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``celery worker`` arguments these options stand for, ``extra`` ones last."""
    names = known_queues() if queues.strip() == "*" else [q.strip() for q in queues.split(",")]
    for name in names:
        try:
            validate_queue_name(name)
        except ValueError as exc:
            raise CommandError(f"--queues {queues!r}: {exc}.") from None
    argv = ["worker", "--queues", ",".join(names), "--loglevel", loglevel]
    argv += ["--hostname", hostname or default_hostname()]
    if concurrency is not None:
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1.")
        argv += ["--concurrency", str(concurrency)]
    if pool:
        argv += ["--pool", pool]
    if beat:
        argv += ["--beat", "--scheduler", SCHEDULER]
    if task_events:
        argv.append("--task-events")
    return [*argv, *extra]


def metrics_directory() -> Path:
    """``PROMETHEUS_MULTIPROC_DIR`` emptied of an earlier worker's files, or a new one of its own.

    Set before ``prometheus_client`` is imported: it picks its mode on import.
    A directory of this worker's making is removed when the worker exits.
    """
    given = os.environ.get(MULTIPROCESS_DIR)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # an earlier worker's counts: not this one's
            stale.unlink()
        return folder
    folder = Path(tempfile.mkdtemp(prefix="taskkit-metrics-"))
    os.environ[MULTIPROCESS_DIR] = str(folder)
    owner = os.getpid()  # pool processes are forked from this one: they must not remove it

    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return folder


def serve_metrics(port: int, address: str) -> None:
    """Count the runs of this worker and its pool, and answer scrapes on ``address:port``."""
    if not 0 < port < 65536:
        raise CommandError(f"--metrics-port must be a TCP port, not {port}.")
    metrics_directory()
    try:
        from taskkit import run_metrics
    except ImportError:
        raise CommandError(
            "--metrics-port needs prometheus_client: pip install 'django-taskkit[metrics]'."
        ) from None
    if not run_metrics.multiprocessing():
        raise CommandError(
            "--metrics-port: prometheus_client was imported before the worker set "
            f"{MULTIPROCESS_DIR}; set {MULTIPROCESS_DIR} in the worker's environment."
        )
    try:
        run_metrics.serve(port, address)
    except OSError as exc:
        raise CommandError(f"--metrics-port {port}: {exc}.") from None


class Command(BaseCommand):
    help = "Start a Celery worker for taskkit's queues ('*' for all of them)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queues", "-Q", default="*", help="Comma-separated, or '*' (default)."
        )
        parser.add_argument("--concurrency", "-c", type=int, help="Runs worked at once.")
        parser.add_argument("--beat", "-B", action="store_true", help="Embed taskkit's Beat.")
        parser.add_argument("--pool", "-P", help="Celery pool: prefork, threads, solo, …")
        parser.add_argument("--loglevel", "-l", default="info")
        parser.add_argument(
            "--hostname",
            "-n",
            help="Node name (Celery's %%h, %%n, %%d apply); default taskkit-<pid>@<host>.",
        )
        parser.add_argument(
            "--task-events",
            "-E",
            action="store_true",
            help="Send task events (Flower and celery events need them).",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            help="Serve the run metrics for Prometheus on this port (django-taskkit[metrics]).",
        )
        parser.add_argument(
            "--metrics-address",
            default="0.0.0.0",
            help="The address --metrics-port listens on (default 0.0.0.0).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Print the worker command only.")
        parser.add_argument(
            "celery_options",
            nargs="*",
            metavar="-- CELERY_OPTION",
            help="Further options of celery worker, after --: -- --max-tasks-per-child 100",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        argv = worker_argv(
            options["queues"],
            options["concurrency"],
            options["beat"],
            options["pool"],
            options["loglevel"],
            options["hostname"],
            task_events=options["task_events"],
            extra=options["celery_options"],
        )
        if options["dry_run"]:
            self.stdout.write("celery " + shlex.join(argv))
            return
        if options["metrics_port"] is not None:
            serve_metrics(options["metrics_port"], options["metrics_address"])
        if options["queues"].strip() == "*":
            follow_known_queues()
        current_app.worker_main(argv=argv)
