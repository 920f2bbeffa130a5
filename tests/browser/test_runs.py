"""Runs and failures in a real browser: retry a failed run, watch a progress bar move."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

import taskkit
from taskkit.models import RunStatus, TaskRun
from tests.integration.conftest import Broker, start_worker, stop
from tests.users import make_user

from .conftest import forged_post, screenshot

pytestmark = pytest.mark.django_db(transaction=True)
Login = Callable[[User], Page]


@pytest.mark.usefixtures("broker")
def test_retry_a_failed_run_from_the_list(login: Login) -> None:
    run = TaskRun.objects.create(
        name="echo:payload",
        status=RunStatus.FAILED,
        payload={"n": 1},
        error="ValueError: no luck",
        traceback="Traceback (most recent call last):\nValueError: no luck",
    )
    page = login(make_user("root", superuser=True))
    page.goto("/admin/taskkit/taskrun/?status__exact=failed")
    screenshot(page, "failures")
    page.locator("#result_list tbody tr").first.locator("input.action-select").check()
    page.select_option("select[name=action]", "retry_selected")
    page.locator("button[name=index]").click()  # the actions bar's Run
    expect(page.locator(".messagelist")).to_contain_text("Queued 1 failed run(s) again.")
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    page.goto(f"/admin/taskkit/taskrun/{run.pk}/change/")
    expect(page.locator("pre").filter(has_text="ValueError: no luck").first).to_be_visible()
    screenshot(page, "run-detail")


def test_live_updates_keep_ticked_rows_and_scroll_and_can_be_paused(login: Login) -> None:
    run = TaskRun.objects.create(
        name="echo:payload", status=RunStatus.RUNNING, progress_done=1, progress_total=4
    )
    failed = TaskRun.objects.create(name="echo:payload", status=RunStatus.FAILED, error="boom")
    page = login(make_user("root", superuser=True))
    page.set_viewport_size({"width": 1280, "height": 300})
    page.goto("/admin/taskkit/taskrun/")
    bar = page.locator("#result_list progress")
    expect(bar).to_have_attribute("value", "1")
    screenshot(page, "runs-progress")
    row = page.locator("#result_list tbody tr").filter(has_text=str(failed.pk)[:8])
    row.locator("input.action-select").check()
    scrolled = page.evaluate("window.scrollTo(0, 150); window.scrollY")
    TaskRun.objects.filter(pk=run.pk).update(progress_done=3)
    expect(bar).to_have_attribute("value", "3")  # updated in place, within a few seconds
    expect(row.locator("input.action-select")).to_be_checked()  # the tick survived
    expect(page.locator(".action-counter")).to_contain_text("1 of 2 selected")
    assert page.evaluate("window.scrollY") == scrolled
    TaskRun.objects.create(name="db:migrate", status=RunStatus.RUNNING)
    expect(page.locator("#taskkit-live-notice")).to_contain_text("1 new run(s)")
    page.get_by_role("button", name="Pause live updates").click()
    TaskRun.objects.filter(pk=run.pk).update(progress_done=4)
    page.wait_for_timeout(7_000)  # two ticks: paused, nothing changes
    expect(bar).to_have_attribute("value", "3")
    page.get_by_role("button", name="Resume live updates").click()
    expect(bar).to_have_attribute("value", "4")


def test_a_runs_page_follows_it_until_it_finishes(login: Login) -> None:
    run = TaskRun.objects.create(name="echo:payload", status=RunStatus.RUNNING)
    page = login(make_user("root", superuser=True))
    page.goto(f"/admin/taskkit/taskrun/{run.pk}/change/")
    expect(page.locator(".field-status")).to_contain_text("Running")
    TaskRun.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED, result={"answer": 42}, finished_at=timezone.now()
    )
    expect(page.locator(".field-status")).to_contain_text("Succeeded")
    expect(page.locator(".field-result_json")).to_contain_text('"answer": 42')
    expect(page.locator("#taskkit-live-toggle")).to_be_hidden()  # finished: no more updates


def test_a_view_only_user_has_no_actions_and_a_forged_retry_is_refused(login: Login) -> None:
    run = TaskRun.objects.create(name="echo:payload", status=RunStatus.FAILED, error="boom")
    page = login(make_user("viewer", "view_dashboard"))
    page.goto("/admin/taskkit/taskrun/")
    expect(page.locator("#result_list")).to_contain_text("echo:payload")
    expect(page.locator("select[name=action]")).to_have_count(0)
    page.goto(f"/admin/taskkit/taskrun/{run.pk}/change/")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    assert forged_post(page, f"/admin/taskkit/taskrun/{run.pk}/retry/") == 403
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED


def test_stop_a_running_run_from_its_page(login: Login, broker: Broker) -> None:
    process = start_worker(broker, "browser-stop", pool="prefork")
    try:
        key = f"stop-{uuid.uuid4().hex}"
        handle = taskkit.enqueue("crash:plain", {"key": key, "seconds": 60})
        deadline = time.monotonic() + 60
        while not TaskRun.objects.filter(pk=handle.id, status=RunStatus.RUNNING).exists():
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.2)
        page = login(make_user("root", superuser=True))
        page.goto(f"/admin/taskkit/taskrun/{handle.id}/change/")
        page.get_by_role("button", name="Stop").click()
        expect(page.locator("#content")).to_contain_text("Are you sure?")
        page.get_by_role("button", name="Yes").click()
        expect(page.locator(".messagelist")).to_contain_text("it is cancelled")
        expect(page.locator(".field-status")).to_contain_text("Cancelled")
        screenshot(page, "run-stopped")
    finally:
        stop(process)
    assert TaskRun.objects.get(pk=handle.id).error == "Terminated while running."


def test_search_by_short_id_error_and_payload_and_read_a_runs_attempts(
    login: Login, settings: Any
) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    queued = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)
    history = [
        {"attempt": 1, "error": "TimeoutError: slow API", "exception": "builtins.TimeoutError",
         "finished_at": "2026-01-05T08:00:03+00:00"},
        {"attempt": 2, "error": "TimeoutError: slow API", "exception": "builtins.TimeoutError",
         "finished_at": "2026-01-05T08:00:33+00:00"},
    ]  # fmt: skip
    target = TaskRun.objects.create(
        name="echo:payload", status=RunStatus.FAILED, payload={"invoice": "INV-2291"},
        error="TimeoutError: slow API", history=history, created_at=queued,
        started_at=queued + timedelta(seconds=30), finished_at=queued + timedelta(seconds=33),
    )  # fmt: skip
    for n in range(5):
        TaskRun.objects.create(name="echo:payload", status=RunStatus.SUCCEEDED, payload={"n": n})
    TaskRun.objects.create(
        name="echo:progress", status=RunStatus.RUNNING, progress_done=2, progress_total=5,
        created_at=timezone.now() - timedelta(seconds=4), started_at=timezone.now(),
    )  # fmt: skip
    page = login(make_user("root", superuser=True))
    page.set_viewport_size({"width": 1680, "height": 800})
    page.goto("/admin/taskkit/taskrun/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(7)
    screenshot(page, "runs")
    for term in (str(target.pk)[:8], "slow API", "inv-2291"):
        page.fill("#searchbar", term)
        page.locator("#searchbar").press("Enter")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(str(target.pk)[:8])
    expect(rows.first).to_contain_text("2026-01-05 09:00:00 CET")  # queued at, zone named
    expect(rows.first).to_contain_text("30 s")  # the wait
    rows.first.get_by_role("link").first.click()
    table = page.locator("table.taskkit-attempts")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator("tbody tr").nth(1)).to_contain_text("2026-01-05 09:00:33 CET")
    screenshot(page, "run-attempts")
