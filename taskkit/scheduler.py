"""taskkit's Beat scheduler: ``celery beat -S taskkit.scheduler:Scheduler``.

It is django-celery-beat's ``DatabaseScheduler`` (periodic tasks from the admin)
plus the promotion of delayed runs and retries. It wakes at least once a second
and sooner when a delayed run falls due, instead of Beat's usual five seconds.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import close_old_connections
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler

from .scheduling import next_due, promote_due, resend_outbox

logger = logging.getLogger("taskkit.scheduler")

#: The longest the scheduler sleeps between two looks at the delayed table.
MAX_SLEEP = 1.0


class Scheduler(DatabaseScheduler):  # type: ignore[misc]  # django-celery-beat is untyped
    """Beat's database scheduler that also sends delayed runs when they are due."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_interval = min(float(getattr(self, "max_interval", MAX_SLEEP)), MAX_SLEEP)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        delay = float(super().tick(*args, **kwargs))
        close_old_connections()
        try:
            promoted = promote_due()
            resend_outbox()
            due = next_due()
        except Exception:  # the database may be away for a moment; Beat must go on
            logger.exception("Promoting delayed runs failed; trying again shortly")
            return MAX_SLEEP
        if promoted:
            return 0.0
        if due is not None:
            delay = min(delay, max((due - timezone.now()).total_seconds(), 0.0))
        return min(delay, MAX_SLEEP)
