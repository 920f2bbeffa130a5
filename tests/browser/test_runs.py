"""Runs and failures in a real browser: retry a failed run, watch a progress bar move."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from taskkit.models import RunStatus, TaskRun
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


def test_a_progress_bar_moves_while_the_run_runs(login: Login) -> None:
    run = TaskRun.objects.create(
        name="echo:payload", status=RunStatus.RUNNING, progress_done=1, progress_total=4
    )
    page = login(make_user("root", superuser=True))
    page.goto("/admin/taskkit/taskrun/")
    bar = page.locator("#result_list progress")
    expect(bar).to_have_attribute("value", "1")
    screenshot(page, "runs-progress")
    TaskRun.objects.filter(pk=run.pk).update(progress_done=3)
    expect(bar).to_have_attribute("value", "3", timeout=15_000)  # the page reloads itself


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
