"""The operator's pages in a real browser: queues, enqueue, delayed, periodic, permissions."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

import taskkit
from taskkit import queues
from taskkit.models import RunStatus, TaskRun, WorkerHeartbeat
from taskkit.scheduling.periodic import sync_periodic
from tests.users import make_user

from .conftest import forged_post, screenshot

pytestmark = pytest.mark.django_db(transaction=True)
Login = Callable[[User], Page]
SCRIPT = "<script>document.title='pwned'</script>"


def queue_length(page: Page, queue: str = "default") -> Any:
    return page.locator("#queues tr", has=page.get_by_role("link", name=queue, exact=True)).locator(
        "td.length"
    )


@pytest.mark.usefixtures("broker")
def test_browse_a_queue_delete_one_and_purge(login: Login) -> None:
    for n in range(5):
        taskkit.enqueue("echo:payload", {"n": n, "note": SCRIPT})
    page = login(make_user("root", superuser=True))
    page.get_by_role("link", name="Dashboard").first.click()
    expect(queue_length(page)).to_have_text("5")
    screenshot(page, "dashboard-queues")
    page.get_by_role("link", name="default", exact=True).click()
    rows = page.locator("#messages tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.first.locator(".taskkit-payload")).to_contain_text(SCRIPT)  # shown, as text
    assert page.title() != "pwned"
    screenshot(page, "queue")
    first_run = rows.first.locator("code").inner_text()
    rows.first.get_by_role("button", name="Delete").click()
    expect(page.locator("#question")).to_contain_text(first_run)
    screenshot(page, "confirm-delete")
    page.get_by_role("button", name="Yes, I'm sure").click()
    expect(page.locator("#summary .length")).to_have_text("4")
    expect(page.locator("#messages")).not_to_contain_text(first_run)
    page.get_by_role("button", name="Purge default").click()
    expect(page.locator("#question")).to_contain_text("Its 4 waiting messages")
    page.get_by_role("link", name="No, take me back").click()
    expect(page.locator("#summary .length")).to_have_text("4")
    page.get_by_role("button", name="Purge default").click()
    page.get_by_role("button", name="Yes, I'm sure").click()
    expect(page.locator(".messagelist")).to_contain_text("Purged 4 messages")
    expect(page.locator("#summary .length")).to_have_text("0")
    assert queues.info("default").length == 0


@pytest.mark.usefixtures("worker")
def test_enqueue_a_task_with_a_payload_and_watch_it_finish(login: Login) -> None:
    page = login(make_user("root", superuser=True))
    page.goto("/admin/taskkit/dashboard/tasks/")
    screenshot(page, "tasks")
    row = page.locator("#tasks tr", has=page.get_by_text("echo:payload", exact=True))
    row.get_by_role("link", name="Enqueue").click()
    page.fill("#id_payload", "[1, 2]")
    page.get_by_role("button", name="Enqueue").click()
    expect(page.locator(".errorlist")).to_contain_text("must be a JSON object")
    page.fill("#id_payload", json.dumps({"greeting": "hello", "note": SCRIPT}))
    screenshot(page, "enqueue")
    page.get_by_role("button", name="Enqueue").click()
    expect(page.locator(".messagelist")).to_contain_text("Queued echo:payload as run")
    expect(page.locator("#run .status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#run .result")).to_contain_text('"greeting": "hello"')
    assert page.title() != "pwned"
    screenshot(page, "run-finished")


@pytest.mark.usefixtures("broker")
def test_enqueue_form_delays_a_run_on_another_queue(login: Login) -> None:
    page = login(make_user("root", superuser=True))
    page.goto("/admin/taskkit/dashboard/tasks/echo:payload/enqueue/")
    page.fill("#id_payload", '{"later": true}')
    page.fill("#id_queue", "a/b")
    page.fill("#id_delay", "120")
    page.get_by_role("button", name="Enqueue").click()
    expect(page.locator(".field-queue .errorlist")).to_be_visible()
    expect(page.locator("#id_delay")).to_have_value("120")  # what was typed is kept
    page.fill("#id_queue", "later")
    page.fill("#id_priority", "3")
    screenshot(page, "enqueue-later")
    page.get_by_role("button", name="Enqueue").click()
    expect(page.locator(".messagelist")).to_contain_text("Queued echo:payload as run")
    page.goto("/admin/taskkit/dashboard/delayed/")
    expect(page.locator("#content")).to_contain_text("echo:payload")
    expect(page.locator("#content")).to_contain_text("later")


@pytest.mark.usefixtures("broker")
def test_delayed_and_periodic_pages(login: Login, reload_registry: Any) -> None:
    reload_registry(
        "tests.apps.nested", "tests.apps.single", TASKKIT={"SCHEDULE": {"0 * * * *": "db:migrate"}}
    )
    sync_periodic()
    later = taskkit.enqueue_in("echo:payload", 3600, {"when": "later"})
    page = login(make_user("root", superuser=True))
    page.goto("/admin/taskkit/dashboard/delayed/")
    expect(page.locator("#delayed tbody tr")).to_have_count(1)
    screenshot(page, "delayed")
    page.get_by_role("button", name="Run now").click()
    expect(page.locator(".messagelist")).to_contain_text("was queued now")
    assert TaskRun.objects.get(pk=later.id).status == RunStatus.QUEUED
    page.goto("/admin/taskkit/dashboard/periodic/")
    expect(page.locator("#periodic td.enabled")).to_have_text("yes")
    screenshot(page, "periodic")
    page.get_by_role("button", name="Disable").click()
    expect(page.locator("#periodic td.enabled")).to_have_text("no")


@pytest.mark.usefixtures("broker")
def test_a_view_only_user_sees_pages_without_buttons_and_is_refused_on_a_forged_post(
    login: Login,
) -> None:
    taskkit.enqueue("echo:payload", {"n": 1})
    page = login(make_user("viewer", "view_dashboard"))
    for path in ("", "tasks/", "queues/default/", "delayed/", "periodic/"):
        page.goto(f"/admin/taskkit/dashboard/{path}")
        expect(page.locator("#content form[method=post]")).to_have_count(0)
    expect(page.locator("#messages tbody tr")).to_have_count(0)  # the last page: periodic
    page.goto("/admin/taskkit/dashboard/queues/default/")
    expect(page.locator("#messages tbody tr")).to_have_count(1)
    screenshot(page, "queue-view-only")
    status = forged_post(page, "/admin/taskkit/dashboard/queues/default/purge/", {"confirm": "yes"})
    assert status == 403
    assert queues.info("default").length == 1
    page.goto("/admin/taskkit/dashboard/")
    assert re.search("Tasks dashboard", page.title())


@pytest.mark.usefixtures("broker")
def test_charts_of_what_finished_lately_filtered_by_task(login: Login) -> None:
    now = timezone.now()
    for minutes, name, status, wait in [
        (0, "echo:payload", RunStatus.SUCCEEDED, 1.5),
        (0, "echo:payload", RunStatus.FAILED, 0.5),
        (7, "db:migrate", RunStatus.SUCCEEDED, 12.0),
        (30, "echo:payload", RunStatus.SUCCEEDED, 3.0),
    ]:
        done = now - timedelta(minutes=minutes)
        TaskRun.objects.create(
            name=name, status=status, created_at=done - timedelta(seconds=wait + 1),
            started_at=done - timedelta(seconds=1), finished_at=done,
        )  # fmt: skip
    taskkit.enqueue("echo:payload", {"waiting": True})  # the default queue is known
    WorkerHeartbeat.objects.create(
        name="w1@box", started_at=now, seen_at=now, queues=["default"], concurrency=1,
        pool="prefork", active=1, reserved=3, reserved_queues={"default": 3},
    )  # fmt: skip
    page = login(make_user("root", superuser=True))
    page.goto("/admin/taskkit/dashboard/")
    default = page.locator("#queues tr", has=page.get_by_role("link", name="default", exact=True))
    expect(default.locator("td.length")).to_have_text("1")
    expect(default.locator("td.reserved")).to_have_text("3")  # taken by the worker, not started
    expect(page.locator("#workers td.reserved")).to_have_text("3")
    runs = page.locator("#chart-runs")
    expect(runs).to_be_visible()
    expect(runs.locator("g.bucket")).to_have_count(60)
    drawn = runs.locator("rect.ok").evaluate_all(
        "rects => rects.filter(r => r.getBBox().height > 0).length"
    )
    assert drawn == 3  # three minutes had successes
    expect(page.locator("#chart-wait circle")).to_have_count(3)
    screenshot(page, "dashboard")
    page.select_option("#chart-filter select[name=task]", "db:migrate")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#chart-wait circle")).to_have_count(1)
    expect(page.locator("#chart-wait circle title")).to_contain_text("12 s mean wait")
    expect(page.locator("#chart-runs > title")).to_contain_text("1 succeeded, 0 failed")
    page.select_option("#chart-filter select[name=window]", "day")
    page.get_by_role("button", name="Show").click()
    expect(runs.locator("g.bucket")).to_have_count(24)
    screenshot(page, "dashboard-day")


@pytest.mark.usefixtures("broker")
def test_the_dashboard_updates_in_place_keeping_a_half_filled_form(login: Login) -> None:
    page = login(make_user("root", superuser=True))
    page.goto("/admin/taskkit/dashboard/")
    failed = page.locator("#counts a").nth(2)
    expect(failed).to_have_text("0")
    page.select_option("#chart-filter select[name=window]", "day")  # chosen, not submitted
    TaskRun.objects.create(name="echo:payload", status=RunStatus.FAILED, error="boom")
    expect(page.locator("#counts a").nth(2)).to_have_text("1", timeout=15_000)
    expect(page.locator("#chart-filter select[name=window]")).to_have_value("day")
    assert page.url.endswith("/admin/taskkit/dashboard/")  # no reload happened
