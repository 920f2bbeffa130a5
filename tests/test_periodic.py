"""Periodic tasks: the sync into django-celery-beat, ticks, and the leader lease."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery, current_app
from celery.backends.base import BaseBackend, DisabledBackend
from django.db import IntegrityError
from django.utils import timezone
from django_celery_beat.models import PeriodicTask, PeriodicTasks

import taskkit
from taskkit.bridge.result_backend import RunTableBackend
from taskkit.models import RunStatus, SchedulerLease, TaskRun
from taskkit.scheduler import Scheduler, interval_ticks, seconds_to_next_tick
from taskkit.scheduling import lease
from taskkit.scheduling.periodic import PREFIX, REMOVED, Periodic, sync_periodic, wanted

pytestmark = pytest.mark.django_db

PERIODIC = {
    "TASKS": {
        "every:minute": {"handler": "tests.apps.nested.handlers.hello", "frequency": 60},
        "on:cron": {"handler": "tests.apps.nested.handlers.hello", "cron": "*/5 * * * *"},
    },
    "SCHEDULE": {"0 * * * *": "db:migrate", "@daily": ["echo:payload", "plain:hello"]},
}


@pytest.fixture
def periodic(reload_registry: Any) -> None:
    reload_registry("tests.apps.nested", "tests.apps.single", TASKKIT=PERIODIC)


def owned() -> dict[str, PeriodicTask]:
    return {row.name: row for row in PeriodicTask.objects.filter(name__startswith=PREFIX)}


@pytest.mark.usefixtures("periodic")
def test_sync_creates_one_row_per_schedule() -> None:
    assert {p.key for p in wanted()} == {
        "taskkit: every:minute",
        "taskkit: on:cron",
        "taskkit: db:migrate @ 0 * * * *",
        "taskkit: echo:payload @ 0 0 * * *",
        "taskkit: plain:hello @ 0 0 * * *",
    }
    before = PeriodicTasks.last_change()
    result = sync_periodic()
    assert (result.created, result.updated, result.disabled) == (5, 0, 0)
    rows = owned()
    assert rows["taskkit: every:minute"].interval.every == 60
    cron = rows["taskkit: on:cron"].crontab
    assert cron is not None and (cron.minute, cron.hour, str(cron.timezone)) == ("*/5", "*", "UTC")
    assert rows["taskkit: db:migrate @ 0 * * * *"].task == "db:migrate"
    assert all(row.enabled and json.loads(row.kwargs) == {} for row in rows.values())
    assert PeriodicTasks.last_change() != before


@pytest.mark.usefixtures("periodic")
def test_a_second_sync_changes_nothing() -> None:
    sync_periodic()
    changed = PeriodicTasks.last_change()
    assert not sync_periodic().changed
    assert PeriodicTasks.last_change() == changed


@pytest.mark.usefixtures("periodic")
def test_operator_switch_survives_and_hand_made_rows_are_left_alone() -> None:
    sync_periodic()
    PeriodicTask.objects.filter(name="taskkit: on:cron").update(enabled=False)
    mine = PeriodicTask.objects.create(
        name="mine", task="db:migrate", interval=owned()["taskkit: every:minute"].interval
    )
    assert not sync_periodic().changed
    assert owned()["taskkit: on:cron"].enabled is False
    assert PeriodicTask.objects.get(pk=mine.pk).enabled is True


def test_removed_tasks_are_disabled_and_come_back(reload_registry: Any) -> None:
    reload_registry("tests.apps.nested", TASKKIT=PERIODIC)
    sync_periodic()
    PeriodicTask.objects.filter(name="taskkit: on:cron").update(enabled=False)  # operator
    reload_registry("tests.apps.nested", TASKKIT={"TASKS": {}})
    result = sync_periodic()
    assert result.disabled == 4  # the operator's disabled row is left as it was
    rows = owned()
    assert not any(row.enabled for row in rows.values())
    assert rows["taskkit: every:minute"].description.startswith(REMOVED)
    assert not rows["taskkit: on:cron"].description.startswith(REMOVED)
    assert not sync_periodic().changed
    reload_registry("tests.apps.nested", TASKKIT=PERIODIC)
    sync_periodic()
    rows = owned()
    assert rows["taskkit: every:minute"].enabled is True
    assert rows["taskkit: on:cron"].enabled is False  # still the operator's choice


@pytest.mark.usefixtures("periodic")
def test_schedule_changes_are_synced() -> None:
    sync_periodic([Periodic("taskkit: x", "db:migrate", every=timedelta(seconds=30))])
    result = sync_periodic([Periodic("taskkit: x", "db:migrate", cron="1 2 * * *")])
    assert result.updated == 1
    row = owned()["taskkit: x"]
    assert row.interval is None and row.crontab is not None and row.crontab.hour == "2"


def test_schedule_setting_checks(reload_registry: Any) -> None:
    from django.core.checks import run_checks

    reload_registry(
        "tests.apps.nested",
        TASKKIT={"SCHEDULE": {"61 * * * *": "db:migrate", "* * * * *": ["no:such"]}},
    )
    errors = [m.msg for m in run_checks(tags=["taskkit"]) if m.id == "taskkit.E006"]
    assert any("minute '61': Invalid end range: 61 > 59" in e for e in errors)
    assert any("names no task: 'no:such'" in e for e in errors)


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2030, 1, 1, hour, minute, second, tzinfo=UTC)


def test_interval_ticks_are_aligned_to_the_clock() -> None:
    now = datetime(2030, 1, 1, 12, 7, 42, 123456, tzinfo=UTC)
    every = timedelta
    # a cold start sends the latest tick only
    assert interval_ticks(every(seconds=10), now, None) == [at(12, 7, 40)]
    assert interval_ticks(every(minutes=1), now, None) == [at(12, 7)]
    # after a tick: nothing until the next one
    assert interval_ticks(every(seconds=10), now, at(12, 7, 40)) == []
    assert interval_ticks(every(seconds=10), now, at(12, 7, 30)) == [at(12, 7, 40)]
    # a hand-over: the ticks missed in the last CATCH_UP are all sent
    assert interval_ticks(every(seconds=2), now, at(12, 7, 35)) == [
        at(12, 7, 36),
        at(12, 7, 38),
        at(12, 7, 40),
        at(12, 7, 42),
    ]
    # Beat was down for an hour: only what falls in CATCH_UP
    assert interval_ticks(every(minutes=1), now, at(11, 0)) == []
    assert interval_ticks(every(seconds=5), now, at(11, 0)) == [at(12, 7, 35), at(12, 7, 40)]
    assert seconds_to_next_tick(every(seconds=10), now) == pytest.approx(7.876544)


def test_lease_has_one_holder_and_hands_over_on_expiry() -> None:
    assert lease.hold("beat", "a")
    assert not lease.hold("beat", "b")
    assert lease.hold("beat", "a")  # renewal
    SchedulerLease.objects.filter(name="beat").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert lease.hold("beat", "b")
    assert not lease.hold("beat", "a")
    lease.release("beat", "b")
    assert lease.hold("beat", "a")


@pytest.mark.django_db(transaction=True)
def test_a_tick_is_sent_once_whoever_sends_it(
    monkeypatch: pytest.MonkeyPatch, reload_registry: Any
) -> None:
    reload_registry("tests.apps.nested", TASKKIT=PERIODIC)
    sent: list[Any] = []
    monkeypatch.setattr(
        sys.modules["taskkit.bridge.send.enqueue"],
        "publish",
        lambda runs: sent.extend(runs),
    )
    first, second = Scheduler(app=current_app, lazy=True), Scheduler(app=current_app, lazy=True)
    first.setup_schedule()
    model_entry = first.schedule["taskkit: every:minute"]
    assert first.apply_async(model_entry, advance=False) is not None
    assert second.apply_async(second.schedule["taskkit: every:minute"], advance=False) is None
    [run] = sent
    row = TaskRun.objects.get(pk=run.run_id)
    assert row.status == RunStatus.QUEUED and row.source == "beat"
    assert row.payload == {"scheduledTime": row.scheduled_for.isoformat()}  # type: ignore[union-attr]
    assert run.kwargs()["context"]["scheduled_time"] == row.scheduled_for.isoformat()  # type: ignore[union-attr]


@pytest.mark.django_db(transaction=True)
def test_only_the_lease_holder_ticks(reload_registry: Any) -> None:
    leader, follower = Scheduler(app=current_app, lazy=True), Scheduler(app=current_app, lazy=True)
    assert leader.tick() <= 1.0 and leader.leading
    assert follower.tick() == 1.0 and not follower.leading
    leader.close()
    follower.tick()
    assert follower.leading


@pytest.mark.django_db(transaction=True)
def test_every_crontab_row_is_loaded_whatever_its_hour(settings: Any) -> None:
    from django_celery_beat.models import CrontabSchedule
    from django_celery_beat.schedulers import DatabaseScheduler

    settings.TIME_ZONE = "Europe/Paris"
    now = timezone.localtime().hour
    # Far outside django-celery-beat's window (now ± 2 h), and not the hour it always keeps
    # (4 a.m. on the server, for Celery's cleanup task: 5 or 6 a.m. in Paris).
    hour = next(h for h in ((now + ahead) % 24 for ahead in (12, 9)) if h not in (4, 5, 6))
    cron = CrontabSchedule.objects.create(hour=str(hour), minute="0", timezone="Europe/Paris")
    PeriodicTask.objects.create(name="far away", task="db:migrate", crontab=cron)
    assert "far away" in Scheduler(app=current_app, lazy=True).schedule
    # the workaround is needed: django-celery-beat's own scheduler leaves the row out
    assert "far away" not in DatabaseScheduler(app=current_app, lazy=True).schedule


def test_twin_schedules_and_twin_admin_rows_do_not_break_the_sync(reload_registry: Any) -> None:
    from django_celery_beat.models import CrontabSchedule

    reload_registry(
        "tests.apps.nested",
        TASKKIT={"SCHEDULE": {"@daily": ["db:migrate", "db:migrate"], "0 0 * * *": "db:migrate"}},
    )
    for _ in range(2):  # identical rows, as the admin allows
        CrontabSchedule.objects.create(minute="0", hour="0", timezone="UTC")
    assert sync_periodic().created == 1
    assert list(owned()) == ["taskkit: db:migrate @ 0 0 * * *"]


def test_schedule_entries_of_the_wrong_type_are_reported(reload_registry: Any) -> None:
    from django.core.checks import run_checks

    reload_registry("tests.apps.nested", TASKKIT={"SCHEDULE": {"@daily": None}})
    errors = [m.msg for m in run_checks(tags=["taskkit"]) if m.id == "taskkit.E006"]
    assert errors == ["TASKKIT['SCHEDULE']['@daily'] must be a task name or a list of names."]
    assert not sync_periodic().changed


def test_frequency_is_whole_seconds() -> None:
    with pytest.raises(taskkit.InvalidTaskDefinition, match="whole seconds"):
        taskkit.task(name="half:second", frequency=0.5)(lambda event: None)


def test_a_resent_tick_keeps_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskkit.bridge.send import publish as publish_module

    sent: list[Any] = []
    monkeypatch.setattr(publish_module, "publish", lambda runs: sent.extend(runs))
    row = TaskRun.objects.create(name="echo:payload", status=RunStatus.QUEUED, source="beat")
    publish_module.publish_run(row)
    assert sent[0].kwargs()["context"]["source"] == "beat"


@pytest.mark.django_db(transaction=True)
def test_taskkit_schedules_are_checked_as_soon_as_beat_builds_its_heap(periodic: None) -> None:
    sync_periodic()
    beat = Scheduler(app=current_app, lazy=True)
    beat.populate_heap()
    assert beat._heap is not None
    due_in = {event[2].name: event[0] - time.time() for event in beat._heap}
    owned = {name: delay for name, delay in due_in.items() if name.startswith(PREFIX)}
    assert owned and all(delay < 5 for delay in owned.values()), owned  # not Celery's next minute


def test_a_sync_that_collides_with_another_beats_sync_tries_again(
    periodic: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = PeriodicTask.objects.create
    collisions = iter([True])

    def create(**fields: Any) -> PeriodicTask:
        if next(collisions, False):  # the other Beat inserted this row a moment before us
            raise IntegrityError("duplicate key value violates unique constraint")
        return real(**fields)

    monkeypatch.setattr(PeriodicTask.objects, "create", create)
    result = sync_periodic()  # the first attempt is rolled back, the second goes through
    assert result.created == len(wanted())
    assert set(owned()) == {periodic.key for periodic in wanted()}


def test_a_sync_that_finds_the_other_beats_row_on_save_tries_again(
    periodic: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """django-celery-beat's ``save()`` checks uniqueness itself: the loser gets a
    ``ValidationError``, not an ``IntegrityError`` (two Beats started together)."""
    real = PeriodicTask.objects.create
    collisions = iter([True])

    def create(**fields: Any) -> PeriodicTask:
        if next(collisions, False):  # the other Beat's row appears between read and create
            PeriodicTask.objects.bulk_create([PeriodicTask(**fields)])  # no save(): no check
        return real(**fields)

    monkeypatch.setattr(PeriodicTask.objects, "create", create)
    result = sync_periodic()  # the first attempt is rolled back, the second goes through
    assert result.created == len(wanted())
    assert set(owned()) == {periodic.key for periodic in wanted()}


@pytest.mark.django_db(transaction=True)
def test_only_a_hand_over_owes_the_ticks_of_the_gap(reload_registry: Any) -> None:
    from taskkit.scheduler import CATCH_UP

    cold = Scheduler(app=current_app, lazy=True)
    assert cold._take_lead()
    assert timezone.now() - cold.leading_since < timedelta(seconds=1)  # a first start owes nothing
    SchedulerLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))  # it died
    heir = Scheduler(app=current_app, lazy=True)
    assert heir._take_lead()
    assert timezone.now() - heir.leading_since >= CATCH_UP  # the gap's ticks are still owed


@pytest.mark.django_db(transaction=True)
def test_an_heir_owes_the_gap_even_if_the_leader_saved_no_tick(reload_registry: Any) -> None:
    """A leader killed before saving its ticks (``total_run_count`` 0 in the database):
    the heir still sends every interval tick of the last ``CATCH_UP``, not only the latest."""
    from types import SimpleNamespace

    from taskkit.scheduler import CATCH_UP

    never_saved = SimpleNamespace(name="taskkit: x", total_run_count=0, last_run_at=None)
    cold = Scheduler(app=current_app, lazy=True)
    assert cold._take_lead()
    now = timezone.now()
    assert cold.last_sent(never_saved, now) is None  # a first start: the latest tick only
    SchedulerLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))  # it died
    heir = Scheduler(app=current_app, lazy=True)
    assert heir._take_lead()
    since = heir.last_sent(never_saved, timezone.now())
    assert since is not None and timezone.now() - since >= CATCH_UP
    ticks = interval_ticks(timedelta(seconds=1), timezone.now(), since)
    assert len(ticks) >= CATCH_UP.total_seconds() - 1  # the whole gap, one tick a second


class _KeepingBackend(BaseBackend):
    """A result backend whose results expire only through ``celery.backend_cleanup``."""

    supports_autoexpire = False


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "backend",
    [None, DisabledBackend, _KeepingBackend],
    ids=["the run table", "no result backend", "keeping"],
)
def test_celery_backend_cleanup_is_installed_only_for_a_backend_that_needs_it(
    backend: type[BaseBackend] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend is not None:
        monkeypatch.setattr(Celery, "backend", property(lambda app: backend(app)))
    else:  # the one taskkit gives an app without a result backend
        assert isinstance(current_app.backend, RunTableBackend)
    assert current_app.conf.result_expires  # Celery's default, which made django-celery-beat add it
    beat = Scheduler(app=current_app, lazy=True)
    beat.setup_schedule()  # what Beat does at start
    schedule = beat.schedule
    wanted = backend is _KeepingBackend
    assert ("celery.backend_cleanup" in schedule) is wanted
    assert PeriodicTask.objects.filter(task="celery.backend_cleanup").exists() is wanted


@pytest.mark.django_db(transaction=True)
def test_closing_beat_never_raises_so_its_sigterm_handler_exits(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Celery's SIGTERM handler closes the scheduler, then raises ``SystemExit``. A release
    that raised (the database closed under the tick the signal interrupted) went into that
    tick instead: Beat went on, and ignored the signal (seen in a test's two-Beat handover)."""
    from celery.beat import Service
    from django.db import ProgrammingError

    def closed(*args: Any) -> None:
        raise ProgrammingError("Cannot operate on a closed database.")

    scheduler = Scheduler(app=current_app, lazy=True)
    assert scheduler.tick() <= 1.0 and scheduler.leading
    monkeypatch.setattr(lease, "release", closed)
    monkeypatch.setattr("django_celery_beat.schedulers.DatabaseScheduler.sync", closed)
    service = Service(app=current_app)
    service.__dict__["scheduler"] = scheduler  # the service's cached scheduler
    service.sync()  # Celery's handler: service.sync(), then raise SystemExit()
    assert [
        record.getMessage() for record in caplog.records if record.name == "taskkit.scheduler"
    ] == [
        "Beat is closing: could not save the schedule; going on",
        "Beat is closing: could not release its lease; going on",
    ]
