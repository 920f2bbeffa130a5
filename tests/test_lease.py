"""The leader lease's count of its holders: what ``taskkit_scheduler_leader_changes_total`` reads."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from taskkit import queues
from taskkit.models import SchedulerLease
from taskkit.scheduling import lease

pytestmark = pytest.mark.django_db


def expire() -> None:
    SchedulerLease.objects.filter(name=lease.BEAT).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_change_is_counted_when_another_takes_the_lease_never_on_a_renewal() -> None:
    assert lease.changes(lease.BEAT) == 0  # never held
    assert lease.hold(lease.BEAT, "a")
    assert lease.hold(lease.BEAT, "a")
    assert not lease.hold(lease.BEAT, "b")  # refused: no change
    assert lease.changes(lease.BEAT) == 0
    expire()
    assert lease.hold(lease.BEAT, "a")  # its own lease again, after a stall
    assert lease.changes(lease.BEAT) == 0
    expire()
    assert lease.hold(lease.BEAT, "b")  # a takeover
    assert lease.hold(lease.BEAT, "b")
    assert lease.changes(lease.BEAT) == 1


def test_a_release_keeps_the_count_and_leaves_nobody_leading() -> None:
    assert lease.hold(lease.BEAT, "a")
    lease.release(lease.BEAT, "a")
    assert lease.held(lease.BEAT) is None and lease.holder(lease.BEAT) is None
    assert answer() == (False, "no leader: no Beat with taskkit's scheduler holds the lease")
    assert lease.hold(lease.BEAT, "b")  # at once: the released lease is expired
    assert lease.changes(lease.BEAT) == 1
    lease.release(lease.BEAT, "a")  # not its holder: nothing happens
    assert lease.holder(lease.BEAT) == "b"


def test_leases_count_apart() -> None:
    assert lease.hold("other", "x")
    expire_other = SchedulerLease.objects.filter(name="other")
    expire_other.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert lease.hold("other", "y")
    assert (lease.changes("other"), lease.changes(lease.BEAT)) == (1, 0)


def answer() -> tuple[bool, str]:
    (check,) = queues.health(["scheduler"]).checks
    return check.ok, check.detail
