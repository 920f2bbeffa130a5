"""Django's task priority as a Celery message priority, per broker.

Django orders priorities from -100 to 100, higher first, 0 the default. Brokers
differ: Redis takes the *lowest* number first (kombu, 0 to 9, grouped into its
``priority_steps``, by default 0, 3, 6 and 9) and treats a message without a
priority as 0, the first; RabbitMQ takes the *highest* first, up to the queue's
``x-max-priority`` (Celery's ``task_queue_max_priority``), and treats a message
without one as 0, the last. Django's 0 is sent without a priority, as every
taskkit task is, so it lands where the broker puts its default (Celery's
``task_default_priority`` when set); other values are spread linearly from
that default towards the broker's first (100) or last (-100) value. Brokers
without priorities (the embedded one) keep their order and ignore it.
"""

from __future__ import annotations

import math

from celery import Celery, current_app

#: Django's range: ``django.tasks.base.TASK_MIN_PRIORITY`` / ``TASK_MAX_PRIORITY``.
DJANGO_RANGE = 100
#: Redis: kombu's range, the first taken first.
REDIS_FIRST, REDIS_LAST = 0, 9
#: RabbitMQ without ``task_queue_max_priority``: Celery's documented 0 to 9.
RABBITMQ_FIRST = 9


def celery_priority(priority: int, app: Celery | None = None) -> int | None:
    """The Celery priority for Django's ``priority`` on ``app``'s broker (``None``: none sent)."""
    if priority == 0:
        return None
    app = app or current_app
    driver = app.connection_for_write().transport.driver_type
    default = app.conf.task_default_priority
    if driver == "redis":
        first, last = REDIS_FIRST, REDIS_LAST
        default = REDIS_FIRST if default is None else default
    elif driver == "amqp":
        first, last = app.conf.task_queue_max_priority or RABBITMQ_FIRST, 0
        default = last if default is None else default
    else:
        return None
    end = first if priority > 0 else last
    return math.floor(default + (end - default) * abs(priority) / DJANGO_RANGE + 0.5)


__all__ = ["celery_priority"]
