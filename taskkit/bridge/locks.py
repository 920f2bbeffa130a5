"""The resque locks, over the database (or a Django cache with an atomic ``add``).

- ``queue_lock``: enqueueing name + payload while such a run is queued is a no-op;
  the lock is taken at enqueue and released when a worker starts the run.
- ``job_lock``: a run of name + payload waits (is re-delayed) while another runs.
- ``single_instance``: one running instance of the task cluster-wide, any payload.

Every lock expires after the task's ``lock_timeout``, so a crashed worker cannot
hold one forever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from typing import Any

from django.core.cache import caches
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..conf import settings
from ..definition import Lock, Task, canonical_json
from ..models import TaskLock


def lock_key(kind: Lock, task: Task, payload: Mapping[str, Any]) -> str:
    """The key one lock of ``kind`` is taken under.

    A periodic run's ``scheduledTime`` is left out: it differs from tick to tick,
    and a lock on name + payload is there to keep such runs from piling up.
    """
    if kind is Lock.SINGLE_INSTANCE:
        return f"taskkit:{kind}:{task.name}"
    digest = payload_digest({k: v for k, v in payload.items() if k != "scheduledTime"})
    return f"taskkit:{kind}:{task.name}:{digest}"


def payload_digest(payload: Mapping[str, Any]) -> str:
    """A short digest of the payload's canonical JSON: equal payloads, one key part."""
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:32]


def _try_cache(alias: str, key: str, owner: str, ttl: timedelta) -> tuple[bool, str | None]:
    cache = caches[alias]
    if cache.add(key, owner, timeout=ttl.total_seconds()):
        return True, None
    holder = cache.get(key)
    return False, None if holder is None else str(holder)


def _try_database(key: str, owner: str, ttl: timedelta) -> tuple[bool, str | None]:
    now = timezone.now()
    TaskLock.objects.filter(key=key, expires_at__lte=now).delete()
    try:
        with transaction.atomic():
            TaskLock.objects.create(key=key, owner=owner, expires_at=now + ttl)
    except IntegrityError:
        return False, TaskLock.objects.filter(key=key).values_list("owner", flat=True).first()
    return True, None


def acquire(key: str, owner: str, ttl: timedelta) -> str | None:
    """Take ``key`` for ``owner``; return ``None`` on success, else the current holder."""
    alias = settings.LOCK_CACHE
    attempt = partial(_try_cache, alias) if alias else _try_database
    while True:  # a holder may let go between our failed attempt and our look at it
        taken, holder = attempt(key, owner, ttl)
        if taken or holder == owner:  # a redelivered run finds its own lock
            return None
        if holder is not None:
            return holder


def holder(key: str) -> str | None:
    """Who holds ``key`` now (``None``: it is free, or expired)."""
    alias = settings.LOCK_CACHE
    if alias:
        found = caches[alias].get(key)
        return None if found is None else str(found)
    return (
        TaskLock.objects.filter(key=key, expires_at__gt=timezone.now())
        .values_list("owner", flat=True)
        .first()
    )


def renew(key: str, owner: str, ttl: timedelta) -> bool:
    """Keep ``key`` for ``owner`` another ``ttl``; ``False`` if ``owner`` no longer holds it."""
    alias = settings.LOCK_CACHE
    if alias:
        cache = caches[alias]
        return cache.get(key) == owner and cache.touch(key, ttl.total_seconds())
    until = timezone.now() + ttl
    return bool(TaskLock.objects.filter(key=key, owner=owner).update(expires_at=until))


def release(key: str, owner: str) -> None:
    """Give ``key`` up if ``owner`` still holds it."""
    alias = settings.LOCK_CACHE
    if alias:
        cache = caches[alias]
        if cache.get(key) == owner:
            cache.delete(key)
        return
    TaskLock.objects.filter(key=key, owner=owner).delete()
