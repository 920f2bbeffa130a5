"""What a worker is and what it holds, as its heartbeat records them.

Read in the worker's main process, so that listing workers reads a table and
never waits on a worker (Celery's remote control asks each one and waits).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class About:
    """What a worker is: read once, when its heart starts."""

    #: The queues its consumer consumes.
    queues: list[str]
    #: Its pool's size: how many runs it works at once.
    concurrency: int
    #: Its pool's kind, as ``--pool`` names it (``prefork``, ``threads``…).
    pool: str
    celery_version: str
    taskkit_version: str

    def fields(self) -> dict[str, Any]:
        """The heartbeat row's fields."""
        return asdict(self)


def describe(consumer: Any) -> About:
    """The worker whose consumer ``worker_ready`` sends; what it does not tell stays empty."""
    import celery
    import celery.concurrency

    import taskkit

    controller = getattr(consumer, "controller", None)
    pool_cls = getattr(controller, "pool_cls", None)
    target = f"{pool_cls.__module__}:{pool_cls.__qualname__}" if pool_cls else ""
    aliases: dict[str, str] = getattr(celery.concurrency, "ALIASES", {})  # --pool's names
    pool = next((alias for alias, path in aliases.items() if path == target), target)
    # the pool's own size first: a solo pool works one run whatever --concurrency says
    concurrency = getattr(getattr(consumer, "pool", None), "limit", None)
    concurrency = concurrency or getattr(controller, "concurrency", 0)
    return About(
        queues=_queues(consumer),
        concurrency=concurrency if isinstance(concurrency, int) else 0,
        pool=pool[:100],
        celery_version=celery.__version__[:32],
        taskkit_version=taskkit.__version__[:32],
    )


def _queues(consumer: Any) -> list[str]:
    """The queues the task consumer consumes (its broadcast queues aside: a fanout exchange's
    queue of its own, ``bcast.<uuid>``, holds no work); else the ones the app is set to consume."""
    task_consumer = getattr(consumer, "task_consumer", None)
    if task_consumer is not None:
        return sorted(
            {
                queue.name
                for queue in task_consumer.queues
                if getattr(getattr(queue, "exchange", None), "type", "") != "fanout"
            }
        )
    app = getattr(consumer, "app", None)
    return sorted(app.amqp.queues.consume_from) if app is not None else []


def waiting() -> dict[str, int]:
    """Runs this process took from the broker but has not started, per queue they came from."""
    from celery.worker import state

    for _ in range(3):
        try:
            unstarted = set(state.reserved_requests) - set(state.active_requests)
        except RuntimeError:  # the worker's thread changed a set while it was copied
            continue
        counts: dict[str, int] = {}
        for request in unstarted:
            info = getattr(request, "delivery_info", None) or {}
            queue = str(info.get("routing_key") or "?")
            counts[queue] = counts.get(queue, 0) + 1
        return counts
    return {}


def held() -> tuple[int, int]:
    """Runs this process works now, and runs it took from the broker but has not started.

    As Celery's remote control counts them (``active`` and ``reserved``), read
    from the worker's state without asking the worker.
    """
    from celery.worker import state

    for _ in range(3):
        try:
            active = set(state.active_requests)
            reserved = set(state.reserved_requests)
        except RuntimeError:  # the worker's thread changed a set while it was copied
            continue
        return len(active), len(reserved - active)
    working = len(state.active_requests)  # each reserved run was reserved before it started
    return working, max(len(state.reserved_requests) - working, 0)
