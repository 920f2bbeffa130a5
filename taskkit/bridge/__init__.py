"""The Celery bridge: taskkit tasks as Celery tasks, the enqueue family, run records."""

from .enqueue import enqueue
from .handle import RunHandle, get_run
from .register import register

__all__ = ["RunHandle", "enqueue", "get_run", "register"]
