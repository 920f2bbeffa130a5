"""The leader lease: two Beats may run, one sends.

A lease row names its holder and an expiry. The holder renews it every tick;
another scheduler takes it only once it has expired, so when the leader dies the
other takes over within the lease's duration.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ..models import SchedulerLease

#: How long a lease lasts without renewal: the longest a dead leader is waited for.
LEASE_DURATION = timedelta(seconds=5)
#: The lease of taskkit's Beat scheduler.
BEAT = "beat"


def hold(name: str, holder: str, duration: timedelta = LEASE_DURATION) -> bool:
    """Take or renew lease ``name`` for ``holder``; return whether ``holder`` leads now."""
    now = timezone.now()
    renewed = (
        SchedulerLease.objects.filter(name=name)
        .filter(Q(holder=holder) | Q(expires_at__lte=now))
        .update(holder=holder, expires_at=now + duration)
    )
    if renewed:
        return True
    try:
        with transaction.atomic():
            SchedulerLease.objects.create(name=name, holder=holder, expires_at=now + duration)
    except IntegrityError:
        return False
    return True


def holder(name: str) -> str | None:
    """Who holds (or last held, if it expired) lease ``name``; ``None`` if nobody."""
    found = held(name)
    return found[0] if found else None


def held(name: str) -> tuple[str, datetime] | None:
    """Who holds (or last held) lease ``name`` and until when; ``None`` if nobody."""
    return SchedulerLease.objects.filter(name=name).values_list("holder", "expires_at").first()


def release(name: str, holder: str) -> None:
    """Give the lease up (on a clean shutdown) so another scheduler takes over at once."""
    SchedulerLease.objects.filter(name=name, holder=holder).delete()
