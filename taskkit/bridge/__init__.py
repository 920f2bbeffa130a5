"""The Celery bridge: taskkit tasks as Celery tasks, the enqueue family, run records.

Two sides, each a sub-package: :mod:`.send` (enqueue, messages, publish) and
:mod:`.work` (the Celery task body, run records, heartbeats, cancellations).
The modules beside them serve both: :mod:`.carrier`, :mod:`.broadcast`,
:mod:`.locks` and :mod:`.track`; neither side imports the other.

Importing it needs the app registry ready (it uses the models); ``taskkit``
re-exports its public names lazily.
"""

from .send.canvas import task_signature
from .send.celery_message import routed_queue
from .send.enqueue import (
    aenqueue,
    aenqueue_at,
    aenqueue_in,
    aenqueue_many,
    delay_to_datetime,
    enqueue,
    enqueue_at,
    enqueue_in,
    enqueue_many,
    enqueue_many_tasks,
    enqueue_task,
    enqueue_task_at,
)
from .send.handle import RunHandle, get_run
from .work.register import register

__all__ = [
    "RunHandle",
    "aenqueue",
    "aenqueue_at",
    "aenqueue_in",
    "aenqueue_many",
    "delay_to_datetime",
    "enqueue",
    "enqueue_at",
    "enqueue_in",
    "enqueue_many",
    "enqueue_many_tasks",
    "enqueue_task",
    "enqueue_task_at",
    "get_run",
    "register",
    "routed_queue",
    "task_signature",
]
