"""A worker's main process ends at most :data:`DEADLINE` seconds after its shutdown.

With a broker Celery polls (the embedded one), a prefork worker runs billiard's
blocking pool, whose processes wait for their next job holding the job queue's
lock. A pool process killed as it takes or holds that lock (``SIGTERM`` sent to
every process of the worker at once: ``pkill -f``, ``kill`` of the process
group, systemd's default ``KillMode=control-group``) leaves it taken. The
worker's warm shutdown still completes, but the pool's finalizer, run when the
interpreter exits, waits for that lock, and the main process never ends. Raw
Celery does the same, on kombu's own filesystem transport.

So when the main process of a worker started from the command line (``celery
worker``, ``taskworker``: Celery's :class:`celery.apps.worker.Worker`, not an
in-process test worker) has shut down, it arms a timer. If the process is still
there :data:`DEADLINE` seconds later, the timer says so on standard error and
ends it with the worker's own exit status. Celery sends ``worker_shutdown``
once the pool has stopped and its runs are done, and the recorder's rows are
written before this handler runs (it is connected first).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

#: Seconds the interpreter's exit handlers may take before the process is ended.
DEADLINE = 10.0


def _end_in(seconds: float, status: int) -> None:
    time.sleep(seconds)
    os.write(
        2,
        f"taskkit: the worker's exit still waits {seconds:g} s after its shutdown "
        "(a pool process killed holding its job queue's lock?); ending it.\n".encode(),
    )
    os._exit(status)


def _arm(sender: Any = None, **kwargs: Any) -> None:
    from celery.apps.worker import Worker  # the command line's worker (imported late: heavy)

    if not isinstance(sender, Worker):
        return
    status = int(sender.exitcode or 0)
    threading.Thread(
        target=_end_in, args=(DEADLINE, status), name="taskkit-exit-deadline", daemon=True
    ).start()


def connect() -> None:
    from celery import signals

    signals.worker_shutdown.connect(_arm, weak=False, dispatch_uid="taskkit.exit_deadline")
