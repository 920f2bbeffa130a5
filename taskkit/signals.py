"""Django signals, one per step of a run's life: connect receivers to these.

Each is sent with ``sender=None`` and the keyword arguments ``step``, ``run_id``,
``task``, ``queue``, ``attempt``, ``duration``, ``worker``, ``error`` and ``waited``, the
fields of the matching ``taskkit.runs`` log line (see
:doc:`/howto/logging-and-signals`). A receiver runs in the process where the step happens (the
web process, the worker, Beat); what it raises is logged, never raised into the
run or the enqueue.

Importing this module loads no models: receivers may be connected from any
module, an ``AppConfig.ready`` included.
"""

from __future__ import annotations

from django.dispatch import Signal

#: A message was handed to the broker (after the transaction's commit), or a
#: delayed run was stored.
run_enqueued = Signal()
#: The scheduler sent a delayed run (or a retry) that fell due.
run_promoted = Signal()
#: A worker starts the run's handler.
run_started = Signal()
#: The handler returned.
run_succeeded = Signal()
#: An attempt failed and the retry policy scheduled the next one.
run_retried = Signal()
#: The run failed for good (or its message could not run).
run_failed = Signal()
#: The run was deleted while queued or delayed, or skipped as deleted.
run_cancelled = Signal()
#: The sweep found the run's worker dead; the run failed or its retry was scheduled.
run_lost = Signal()

__all__ = [
    "run_cancelled",
    "run_enqueued",
    "run_failed",
    "run_lost",
    "run_promoted",
    "run_retried",
    "run_started",
    "run_succeeded",
]
