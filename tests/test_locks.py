"""The lock store on its own: the database and a cache with an atomic add."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

import taskkit
from taskkit.bridge.locks import acquire, holder, lock_key, release, renew
from taskkit.definition import Lock
from taskkit.models import TaskLock

TTL = timedelta(minutes=1)


@pytest.fixture(params=["database", "cache"])
def store(request: pytest.FixtureRequest, settings: Any) -> str:
    if request.param == "cache":
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "locks": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "l"},
        }
        settings.TASKKIT = {"LOCK_CACHE": "locks"}
    return str(request.param)


@pytest.mark.django_db
def test_one_holder_at_a_time(store: str) -> None:
    assert acquire("k", "a", TTL) is None
    assert acquire("k", "b", TTL) == "a"
    release("k", "b")  # not the holder: nothing happens
    assert acquire("k", "b", TTL) == "a"
    release("k", "a")
    assert acquire("k", "b", TTL) is None
    assert TaskLock.objects.exists() is (store == "database")


@pytest.mark.django_db
def test_a_holder_is_seen_and_renews(store: str) -> None:
    assert holder("renewed") is None
    assert not renew("renewed", "a", TTL)  # nothing to renew
    assert acquire("renewed", "a", TTL) is None
    assert holder("renewed") == "a"
    assert renew("renewed", "a", TTL)
    assert not renew("renewed", "b", TTL)  # not the holder
    release("renewed", "a")
    assert holder("renewed") is None


@pytest.mark.django_db
def test_a_renewed_lock_outlives_its_first_expiry() -> None:
    TaskLock.objects.create(key="k", owner="a", expires_at=timezone.now() + timedelta(seconds=1))
    assert renew("k", "a", TTL)
    assert TaskLock.objects.get(key="k").expires_at > timezone.now() + TTL / 2
    TaskLock.objects.update(expires_at=timezone.now() - TTL)
    assert holder("k") is None  # expired: free, though its row is still there


@pytest.mark.django_db
def test_an_expired_lock_is_free() -> None:
    TaskLock.objects.create(key="k", owner="crashed", expires_at=timezone.now() - TTL)
    assert acquire("k", "next", TTL) is None
    assert TaskLock.objects.get(key="k").owner == "next"


def test_lock_keys() -> None:
    task = taskkit.get_task("echo:payload")
    assert lock_key(Lock.SINGLE_INSTANCE, task, {}) == "taskkit:single_instance:echo:payload"
    one = lock_key(Lock.QUEUE, task, {"a": 1, "b": 2})
    assert one.startswith("taskkit:queue_lock:echo:payload:") and len(one.rsplit(":", 1)[1]) == 32
    assert one == lock_key(Lock.QUEUE, task, {"b": 2, "a": 1})
    assert one != lock_key(Lock.QUEUE, task, {"a": 2, "b": 2})
    assert one != lock_key(Lock.JOB, task, {"a": 1, "b": 2})
    # a periodic run's tick time is not part of the key: ticks do not pile up
    tick = {"a": 1, "b": 2, "scheduledTime": "2030-01-01T00:00:00+00:00"}
    assert lock_key(Lock.QUEUE, task, tick) == one


@pytest.mark.django_db
def test_a_run_finds_its_own_lock_free() -> None:
    assert acquire("k", "run-1", TTL) is None
    assert acquire("k", "run-1", TTL) is None  # redelivered: the lock is its own
    assert acquire("k", "run-2", TTL) == "run-1"


def test_scope_all_refuses_retries_and_locks() -> None:
    def run(event: Any) -> None:
        return None

    with pytest.raises(taskkit.InvalidTaskDefinition, match="retries and locks"):
        taskkit.task(name="b:r", scope="all", retry=3)(run)
    with pytest.raises(taskkit.InvalidTaskDefinition, match="retries and locks"):
        taskkit.task(name="b:l", scope="all", locks="job_lock")(run)


@pytest.mark.django_db(transaction=True)
def test_a_failed_send_releases_the_queue_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    def down(runs: Any) -> None:
        raise taskkit.BrokerUnavailable("down")

    monkeypatch.setattr(sys.modules["taskkit.bridge.send.enqueue"], "publish", down)
    with pytest.raises(taskkit.BrokerUnavailable):
        taskkit.enqueue("locks:queued", {"x": 1})
    assert not TaskLock.objects.exists()
