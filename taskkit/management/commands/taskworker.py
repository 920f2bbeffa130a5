"""``manage.py taskworker``: a Celery worker for taskkit's queues, the plain Celery way.

``--queues '*'`` consumes every queue taskkit knows of (the actionhero ``*``
worker); ``--concurrency`` is how many runs are worked at once (plainweb's
batch size); ``--beat`` embeds taskkit's Beat scheduler, for development.
"""

from __future__ import annotations

import shlex
from typing import Any

from celery import current_app
from django.core.management.base import BaseCommand, CommandError, CommandParser

from taskkit.bridge.send.known_queues import known_queues

SCHEDULER = "taskkit.scheduler:Scheduler"


def worker_argv(
    queues: str, concurrency: int | None, beat: bool, pool: str | None, loglevel: str
) -> list[str]:
    """The ``celery worker`` arguments these options stand for."""
    names = known_queues() if queues.strip() == "*" else [q.strip() for q in queues.split(",")]
    if not all(names):
        raise CommandError(f"--queues {queues!r} names an empty queue.")
    argv = ["worker", "--queues", ",".join(names), "--loglevel", loglevel]
    if concurrency is not None:
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1.")
        argv += ["--concurrency", str(concurrency)]
    if pool:
        argv += ["--pool", pool]
    if beat:
        argv += ["--beat", "--scheduler", SCHEDULER]
    return argv


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
        parser.add_argument("--dry-run", action="store_true", help="Print the worker command only.")

    def handle(self, *args: Any, **options: Any) -> None:
        argv = worker_argv(
            options["queues"],
            options["concurrency"],
            options["beat"],
            options["pool"],
            options["loglevel"],
        )
        if options["dry_run"]:
            self.stdout.write("celery " + shlex.join(argv))
            return
        current_app.worker_main(argv=argv)
