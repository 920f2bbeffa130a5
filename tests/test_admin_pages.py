"""The admin's "Tasks" pages: dashboard, tasks, queue browser, delayed, periodic.

They run on the embedded filesystem broker (a folder per test), which can list
and remove single messages, with Django's test client.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

import taskkit
from taskkit import queues
from taskkit.bridge.work import heartbeat
from taskkit.bridge.work.about import About
from taskkit.models import RunStatus, TaskRun, WorkerHeartbeat
from taskkit.quarantine import QUARANTINE
from taskkit.scheduling.periodic import PREFIX, sync_periodic
from tests.integration.conftest import current, make_app, transport_settings
from tests.users import staff

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Celery]:
    """The embedded filesystem broker in a fresh folder, as Celery's current app."""
    app = make_app("pages", "filesystem://", **transport_settings("filesystem", tmp_path))
    with current(app):
        yield app


@pytest.fixture
def manager() -> Client:
    return staff("manager", "manage_tasks")


@pytest.fixture
def viewer() -> Client:
    return staff("viewer", "view_dashboard")


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:{name}", args=args)


def fill(count: int, queue: str = "default", **payload: Any) -> list[taskkit.RunHandle]:
    return [taskkit.enqueue("echo:payload", {"n": n, **payload}, queue=queue) for n in range(count)]


def length(queue: str = "default") -> int:
    return queues.info(queue).length


def text(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return str(response.content.decode())


@pytest.mark.usefixtures("broker")
def test_the_dashboard_shows_queues_and_counts(viewer: Client) -> None:
    fill(3)
    taskkit.enqueue_in("echo:payload", 3600, {"later": True})
    TaskRun.objects.create(name="echo:payload", status=RunStatus.FAILED, worker="w1@host")
    started = TaskRun.objects.create(name="echo:payload", status=RunStatus.RUNNING)
    TaskRun.objects.filter(pk=started.pk).update(
        worker="w2@host", started_at=started.created_at - timedelta(minutes=2)
    )
    page = text(viewer.get(url("taskkit_dashboard_changelist")))
    row = re.search(
        r'<a href="[^"]+/queues/default/">default</a></td>\s*<td class="length">(\d+)', page
    )
    assert row is not None and row.group(1) == "3"
    assert "ago" in page  # the oldest message's age
    counts = re.findall(r"<th>(Delayed|Running|Failed)</th><td><a [^>]+>(\d+)</a>", page)
    assert dict(counts) == {"Delayed": "1", "Running": "1", "Failed": "1"}
    assert 'data-taskkit-live="5"' in page and "taskkit/live.js" in page


def test_the_dashboard_lists_live_workers_then_lost_ones(viewer: Client) -> None:
    described = About(["default", "<b>mail</b>"], 4, "prefork", "5.7.0", "1.0")
    assert heartbeat.beat("<script>w1</script>@box", timezone.now(), "box:41:aa", described, (3, 2))
    WorkerHeartbeat.objects.create(
        name="gone@other",
        started_at=timezone.now() - timedelta(hours=2),
        seen_at=timezone.now() - timedelta(hours=1),
        lost_at=timezone.now() - timedelta(minutes=59),
        process="other:7:bb",
    )
    page = text(viewer.get(url("taskkit_dashboard_changelist")))
    table = page[page.index('<table id="workers">') :]
    rows = re.findall(r"<tr class=\"(alive|gone)\">(.*?)</tr>", table, re.S)
    assert [state for state, _ in rows] == ["alive", "gone"]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for _, row in rows]
    assert cells[0][:7] == [
        "&lt;script&gt;w1&lt;/script&gt;@box",
        "box",
        "41",
        "default, &lt;b&gt;mail&lt;/b&gt;",
        "prefork &times; 4",
        "3",
        "2",
    ]
    assert cells[0][8] == "alive"
    assert cells[1][:3] == ["gone@other", "other", "7"] and cells[1][8].startswith("lost ")
    assert "<script>w1" not in page


def test_the_dashboard_reports_an_unreachable_broker(viewer: Client) -> None:
    with current(make_app("away", "redis://127.0.0.1:1/0", broker_connection_timeout=0.2)):
        page = text(viewer.get(url("taskkit_dashboard_changelist")))
    assert "The broker cannot be reached" in page


def test_a_broker_taskkit_cannot_inspect_is_said_so(viewer: Client) -> None:
    with current(make_app("memory", "memory://")):
        page = text(viewer.get(url("taskkit_dashboard_changelist")))
        assert "taskkit cannot inspect &#x27;memory&#x27; brokers" in page
        response = viewer.get(url("taskkit_queue", "default"), follow=True)
        assert "taskkit cannot inspect" in text(response)


def test_the_index_links_the_dashboard_for_viewers_only(viewer: Client) -> None:
    assert url("taskkit_dashboard_changelist") in text(viewer.get(url("index")))
    nobody = staff("nobody")
    assert url("taskkit_dashboard_changelist") not in text(nobody.get(url("index")))


PAGES: list[tuple[Any, ...]] = [
    ("taskkit_dashboard_changelist",),
    ("taskkit_tasks",),
    ("taskkit_task_enqueue", "echo:payload"),
    ("taskkit_queue", "default"),
    ("taskkit_delayed",),
    ("taskkit_periodic",),
]
ACTIONS: list[tuple[Any, ...]] = [
    ("taskkit_task_enqueue", "echo:payload"),
    ("taskkit_queue_delete_run", "default"),
    ("taskkit_queue_delete", "default"),
    ("taskkit_queue_purge", "default"),
    ("taskkit_delayed_delete", "00000000-0000-0000-0000-000000000001"),
    ("taskkit_delayed_run", "00000000-0000-0000-0000-000000000001"),
    ("taskkit_periodic_toggle", 1),
    ("taskkit_periodic_run", "echo:payload"),
]


@pytest.mark.usefixtures("broker")
def test_staff_without_the_permissions_are_refused_and_anonymous_users_sent_to_log_in() -> None:
    nobody = staff("nobody")
    for name, *args in PAGES:
        assert nobody.get(url(name, *args)).status_code == 403, name
        response = Client().get(url(name, *args))
        assert response.status_code == 302 and "/login/" in response["Location"], name


@pytest.mark.usefixtures("broker")
def test_viewers_see_every_page_but_no_buttons_and_their_posts_are_refused(viewer: Client) -> None:
    fill(2)
    taskkit.enqueue_in("echo:payload", 3600)
    for name, *args in PAGES:
        page = text(viewer.get(url(name, *args)))
        assert '<form method="post"' not in page, name  # not one form that changes state
    queued = length()
    for name, *args in ACTIONS:
        response = viewer.post(url(name, *args), {"run_id": "x", "name": "echo:payload"})
        assert response.status_code == 403, name
    assert length() == queued
    assert TaskRun.objects.filter(status=RunStatus.SCHEDULED).count() == 1


@pytest.mark.usefixtures("broker")
def test_state_changes_are_posts_only(manager: Client) -> None:
    for name, *args in ACTIONS[1:]:  # the enqueue page's GET is its form
        assert manager.get(url(name, *args)).status_code == 405, name


@pytest.mark.usefixtures("broker")
def test_state_changes_need_the_csrf_token() -> None:
    user = User.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    fill(1)
    response = client.post(url("taskkit_queue_purge", "default"), {"confirm": "yes"})
    assert response.status_code == 403
    assert length() == 1


@pytest.mark.usefixtures("broker")
def test_the_tasks_page_lists_every_task_with_its_schedule_and_last_status(
    manager: Client,
) -> None:
    TaskRun.objects.create(name="echo:payload", status=RunStatus.FAILED)
    page = text(manager.get(url("taskkit_tasks")))
    for name in taskkit.all_tasks():
        assert f"<strong>{name}</strong>" in page
    assert "failed" in page
    assert url("taskkit_task_enqueue", "echo:payload") in page


@pytest.mark.usefixtures("broker")
def test_enqueue_validates_the_payload_before_sending(manager: Client) -> None:
    target = url("taskkit_task_enqueue", "echo:payload")
    for bad, complaint in [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, not list"),
        ("[" * 100_000, "nests more than 100 levels deep"),  # too deep for the parser: no 500
        ('{"a":' * 150 + "1" + "}" * 150, "nests more than 100 levels deep"),
        ('{"text": "\\ud800"}', "lone surrogate"),
    ]:
        assert complaint in text(manager.post(target, {"payload": bad}))
    too_late = text(manager.post(target, {"delay": "1e308"}))  # past enqueue_in's bounds: no 500
    assert "needs a delay from 0 to 3650 days" in too_late
    assert length() == 0
    response = manager.post(target, {"payload": '{"to": "<script>alert(1)</script>"}'})
    assert response.status_code == 302
    (message,) = queues.list("default")
    assert message.payload == {"to": "<script>alert(1)</script>"}
    assert response["Location"] == url("taskkit_run", message.run_id)
    waiting = text(manager.get(response["Location"]))
    assert "Waiting in its queue" in waiting and "data-taskkit-live" in waiting


@pytest.mark.usefixtures("broker")
def test_enqueue_with_a_queue_a_delay_a_time_or_a_priority(manager: Client, settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    target = url("taskkit_task_enqueue", "echo:payload")
    form = text(manager.get(target))
    for field in ("payload", "queue", "delay", "at", "priority"):
        assert f'name="{field}"' in form
    for bad, complaint in [
        ({"queue": "a/b"}, "queue name"),
        ({"queue": "celeryev"}, "celeryev"),
        ({"delay": "-1"}, "greater than or equal to 0"),
        ({"delay": "soon"}, "Enter a number"),
        ({"at": "tomorrow"}, "Enter a valid date/time"),
        ({"delay": "5", "at": "2030-01-01T10:00:00"}, "not both"),
        ({"priority": "256"}, "less than or equal to 255"),
    ]:
        assert complaint in text(manager.post(target, {"payload": "{}", **bad})), bad
    assert length() == 0 and not TaskRun.objects.exists()
    manager.post(target, {"payload": '{"n": 1}', "queue": "elsewhere", "priority": "3"})
    (message,) = queues.list("elsewhere")
    assert message.payload == {"n": 1}
    before = timezone.now()
    manager.post(target, {"payload": '{"n": 2}', "delay": "60"})
    later = TaskRun.objects.get(payload={"n": 2})
    assert later.status == RunStatus.SCHEDULED and later.scheduled_for is not None
    assert 59 <= (later.scheduled_for - before).total_seconds() <= 70
    manager.post(target, {"payload": '{"n": 3}', "at": "2030-01-02T10:00:00"})
    at = TaskRun.objects.get(payload={"n": 3})
    assert at.scheduled_for == datetime(2030, 1, 2, 9, 0, tzinfo=UTC)  # 10:00 in Paris
    assert length() == 0  # nothing delayed went to the default queue


@pytest.mark.usefixtures("broker")
def test_a_django_task_is_listed_and_enqueued_from_the_tasks_page(manager: Client) -> None:
    from tests.apps.single import jobs  # its module imported: the task is listed

    name = jobs.add.module_path
    assert f"<strong>{name}</strong>" in text(manager.get(url("taskkit_tasks")))
    target = url("taskkit_task_enqueue", name)
    refused = text(manager.post(target, {"payload": '{"args": [1], "kwargs": {}}'}))
    assert "missing a required argument: &#x27;b&#x27;" in refused
    assert length() == 0
    response = manager.post(target, {"payload": '{"args": [1, 2], "kwargs": {}}'})
    assert response.status_code == 302
    (message,) = queues.list("default")
    assert (message.name, message.payload) == (name, {"args": [1, 2], "kwargs": {}})


def test_enqueue_of_an_unknown_task_goes_back_to_the_tasks(manager: Client) -> None:
    response = manager.get(url("taskkit_task_enqueue", "no:such"))
    assert response.status_code == 302 and response["Location"] == url("taskkit_tasks")


@pytest.mark.usefixtures("broker")
def test_the_queue_browser_pages_and_shortens_and_escapes_payloads(viewer: Client) -> None:
    handles = fill(55, note="<script>alert(1)</script>")
    taskkit.enqueue("echo:payload", {"long": "x" * 500})
    first = text(viewer.get(url("taskkit_queue", "default")))
    assert first.count('class="taskkit-payload"') == 50
    assert "<script>alert(1)</script>" not in first
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in first
    assert "page 1 of 2" in first
    last = text(viewer.get(url("taskkit_queue", "default") + "?page=2"))
    assert last.count('class="taskkit-payload"') == 6
    long = re.search(r'class="taskkit-payload">([^<]*x{50}[^<]*)<', last)
    assert long is not None
    assert len(html.unescape(long.group(1))) == 200 and long.group(1).endswith("…")
    assert viewer.get(url("taskkit_queue", "nowhere")).status_code == 404
    runs = reverse("admin:taskkit_taskrun_changelist")
    assert f'href="{runs}?q={handles[0].id}"' in first  # each run id links to its run


@pytest.mark.usefixtures("broker")
def test_delete_one_asks_first_then_removes_that_run(manager: Client) -> None:
    handles = fill(3)
    target = url("taskkit_queue_delete_run", "default")
    asking = text(manager.post(target, {"run_id": str(handles[1].id)}))
    assert "Are you sure?" in asking and str(handles[1].id) in asking
    assert length() == 3
    response = manager.post(target, {"run_id": str(handles[1].id), "confirm": "yes"})
    assert response.status_code == 302
    assert [m.run_id for m in queues.list("default")] == [str(handles[0].id), str(handles[2].id)]
    again = manager.post(target, {"run_id": str(handles[1].id), "confirm": "yes"}, follow=True)
    assert "no longer queued" in text(again)


@pytest.mark.usefixtures("broker")
def test_delete_matching_and_purge_ask_first(manager: Client) -> None:
    fill(2, kind="a")
    fill(3, kind="b")
    target = url("taskkit_queue_delete", "default")
    wanted = {"name": "echo:payload", "payload": '{"n": 1, "kind": "b"}'}
    assert "Delete 1 echo:payload messages" in text(manager.post(target, wanted))
    assert length() == 5
    manager.post(target, {**wanted, "confirm": "yes"})
    assert length() == 4
    bad = manager.post(
        target, {"name": "echo:payload", "payload": "{", "confirm": "yes"}, follow=True
    )
    assert "not valid JSON" in text(bad)
    assert length() == 4
    purge = url("taskkit_queue_purge", "default")
    assert "Its 4 waiting messages" in text(manager.post(purge))
    assert length() == 4
    page = text(manager.post(purge, {"confirm": "yes"}, follow=True))
    assert "Purged 4 messages" in page
    assert length() == 0


@pytest.mark.usefixtures("broker")
def test_delayed_runs_can_be_deleted_or_run_now(viewer: Client, manager: Client) -> None:
    soon = taskkit.enqueue_in("echo:payload", 3600, {"which": "soon"})
    later = taskkit.enqueue_in("echo:payload", 7200, {"which": "later"})
    page = text(viewer.get(url("taskkit_delayed")))
    assert page.index("&quot;which&quot;:&quot;soon&quot;") < page.index("&quot;later&quot;")
    response = manager.post(url("taskkit_delayed_run", soon.id))
    assert response["Location"] == url("taskkit_run", soon.id)
    assert TaskRun.objects.get(pk=soon.id).status == RunStatus.QUEUED
    assert [m.run_id for m in queues.list("default")] == [str(soon.id)]
    target = url("taskkit_delayed_delete", later.id)
    assert "Are you sure?" in text(manager.post(target))
    manager.post(target, {"confirm": "yes"})
    assert not TaskRun.objects.filter(pk=later.id).exists()
    gone = manager.post(url("taskkit_delayed_run", later.id), follow=True)
    assert "no longer delayed" in text(gone)


@pytest.mark.usefixtures("broker")
def test_periodic_schedules_show_next_run_toggle_and_run_now(
    manager: Client, reload_registry: Any
) -> None:
    reload_registry(
        "tests.apps.nested", "tests.apps.single", TASKKIT={"SCHEDULE": {"0 * * * *": "db:migrate"}}
    )
    sync_periodic()
    row = PeriodicTask.objects.get(name__startswith=PREFIX)
    page = text(manager.get(url("taskkit_periodic")))
    assert row.name in page and ":00:00" in page  # the next run, on the hour
    manager.post(url("taskkit_periodic_toggle", row.pk))
    row.refresh_from_db()
    assert not row.enabled
    response = manager.post(url("taskkit_periodic_run", "db:migrate"))
    assert response.status_code == 302
    (message,) = queues.find("db:migrate")["queued"]
    assert "scheduledTime" in message.payload
    refused = manager.post(url("taskkit_periodic_run", "echo:payload"), follow=True)
    assert "is not periodic" in text(refused)


def test_the_run_page_follows_a_run_until_it_finishes(viewer: Client) -> None:
    run = TaskRun.objects.create(
        name="echo:payload", status=RunStatus.RUNNING, progress_done=1, progress_total=4
    )
    page = text(viewer.get(url("taskkit_run", run.pk)))
    assert '<progress value="1" max="4">' in page and "data-taskkit-live" in page
    TaskRun.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED, result={"html": "<script>alert(1)</script>"}
    )
    page = text(viewer.get(url("taskkit_run", run.pk)))
    assert "succeeded" in page and "data-taskkit-live" not in page
    assert "&lt;script&gt;" in page and "<script>alert" not in page


@pytest.mark.usefixtures("broker")
def test_quarantined_items_are_shown_with_their_problem_and_deleted_one_by_one(
    manager: Client, tmp_path: Path
) -> None:
    folder = tmp_path / "queue"
    (folder / f"00000000000000000001_0.{QUARANTINE}.msg").write_bytes(b"<b>not json</b>\x00")
    (folder / f"00000000000000000002_0.{QUARANTINE}.msg").write_bytes(b'{"foo": 1}')
    dashboard = text(manager.get(url("taskkit_dashboard_changelist")))
    assert url("taskkit_queue", QUARANTINE) in dashboard
    page = text(manager.get(url("taskkit_queue", QUARANTINE)))
    assert page.count("Malformed</strong>: not JSON") == 1
    assert "no properties with a delivery_tag" in page
    assert "&lt;b&gt;not json&lt;/b&gt;\\x00" in page and "<b>not json" not in page
    first = queues.list(QUARANTINE)[0]
    target = url("taskkit_queue_delete_run", QUARANTINE)
    response = manager.post(target, {"run_id": first.run_id, "confirm": "yes"})
    assert response.status_code == 302
    assert [m.raw for m in queues.list(QUARANTINE)] == [b'{"foo": 1}']

    out = io.StringIO()
    call_command("taskqueue", "list", QUARANTINE, stdout=out)
    assert "(malformed: not a kombu envelope: no properties with a delivery_tag)" in out.getvalue()
    (last,) = queues.list(QUARANTINE)
    call_command("taskqueue", "del-run", last.run_id, "--noinput", stdout=io.StringIO())
    assert list(folder.glob(f"*.{QUARANTINE}.msg")) == []


@pytest.mark.usefixtures("broker")
def test_the_dashboard_charts_what_finished_lately_by_task_and_queue(viewer: Client) -> None:
    now = timezone.now()
    for status, name, queue in [
        (RunStatus.SUCCEEDED, "echo:payload", "default"),
        (RunStatus.SUCCEEDED, "echo:payload", "default"),
        (RunStatus.FAILED, "db:migrate", "slow"),
    ]:
        TaskRun.objects.create(
            name=name, queue=queue, status=status, created_at=now - timedelta(seconds=3),
            started_at=now - timedelta(seconds=1), finished_at=now,
        )  # fmt: skip
    page = text(viewer.get(url("taskkit_dashboard_changelist")))
    assert 'id="chart-runs"' in page and 'id="chart-wait"' in page
    assert "Runs finished: 2 succeeded, 1 failed, in the last hour" in page
    assert page.count('<g class="bucket">') == 60
    assert ": 2 succeeded, 1 failed</title>" in page  # the minute they finished in
    assert "2.00 s mean wait</title>" in page
    by_task = text(viewer.get(url("taskkit_dashboard_changelist"), {"task": "db:migrate"}))
    assert "Runs finished: 0 succeeded, 1 failed" in by_task
    by_queue = text(viewer.get(url("taskkit_dashboard_changelist"), {"queue": "default"}))
    assert "Runs finished: 2 succeeded, 0 failed" in by_queue
    day = text(viewer.get(url("taskkit_dashboard_changelist"), {"window": "day"}))
    assert day.count('<g class="bucket">') == 24 and "in the last day" in day
    odd = text(viewer.get(url("taskkit_dashboard_changelist"), {"window": "<x>", "task": "<x>"}))
    assert "in the last hour" in odd and "<x>" not in odd
