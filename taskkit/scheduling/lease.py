"""The leader lease: two Beats may run, one sends.

A lease row names its holder and an expiry. The holder renews it every tick;
another scheduler takes it only once it has expired, so when the leader dies the
other takes over within the lease's duration. The row is kept for good (a
release empties its holder), so its ``term``, the count of its holders, only
grows: the metrics' leader changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, When
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
        .update(
            holder=holder,
            expires_at=now + duration,
            term=Case(When(holder=holder, then=F("term")), default=F("term") + 1),
        )
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
    """Who holds (or last held) lease ``name`` and until when; ``None`` if nobody, or released."""
    return (
        SchedulerLease.objects.filter(name=name)
        .exclude(holder="")
        .values_list("holder", "expires_at")
        .first()
    )


def changes(name: str) -> int:
    """How many times lease ``name`` passed to another holder (0: never, or never held)."""
    term = SchedulerLease.objects.filter(name=name).values_list("term", flat=True).first()
    return max((term or 1) - 1, 0)


def release(name: str, holder: str) -> None:
    """Give the lease up (on a clean shutdown) so another scheduler takes over at once.

    The row stays, expired and held by nobody, so its ``term`` goes on counting.
    """
    now = timezone.now()
    SchedulerLease.objects.filter(name=name, holder=holder).update(holder="", expires_at=now)
