"""The runs admin: filters, escaping, progress, retry and remove, and who may do what."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from taskkit import queues
from taskkit.models import RunStatus, TaskRun
from tests.integration.conftest import current, make_app, transport_settings
from tests.users import staff

pytestmark = pytest.mark.django_db(transaction=True)
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(autouse=True)
def broker(tmp_path: Path) -> Iterator[None]:
    """Retried runs go to the embedded broker in a fresh folder."""
    app = make_app("runs", "filesystem://", **transport_settings("filesystem", tmp_path))
    with current(app):
        yield


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:taskkit_taskrun_{name}", args=args)


def text(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return str(response.content.decode())


def failed_run(**fields: Any) -> TaskRun:
    values = {"name": "echo:payload", "status": RunStatus.FAILED, "error": "boom", **fields}
    return TaskRun.objects.create(**values)


def test_who_sees_the_runs() -> None:
    run = failed_run()
    nobody = staff("nobody")
    for page in (url("changelist"), url("change", run.pk)):
        assert nobody.get(page).status_code == 403
        assert Client().get(page).status_code == 302
    viewer = staff("viewer", "view_dashboard")
    listing = text(viewer.get(url("changelist")))
    assert "echo:payload" in listing and 'name="action"' not in listing
    detail = text(viewer.get(url("change", run.pk)))
    assert "boom" in detail and 'value="Retry"' not in detail


def test_viewers_are_refused_every_change() -> None:
    run = failed_run()
    viewer = staff("viewer", "view_dashboard")
    assert viewer.post(url("retry", run.pk)).status_code == 403
    assert viewer.post(url("remove", run.pk)).status_code == 403
    forged = {"action": "retry_selected", "_selected_action": [str(run.pk)]}
    viewer.post(url("changelist"), forged)  # an action they do not have is not run
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    manager = staff("manager", "manage_tasks")
    assert manager.get(url("retry", run.pk)).status_code == 405


def test_filters_and_search_by_task_status_and_id() -> None:
    failed = failed_run()
    TaskRun.objects.create(name="db:migrate", status=RunStatus.SUCCEEDED)
    viewer = staff("viewer", "view_dashboard")
    only_failed = text(viewer.get(url("changelist") + "?status__exact=failed"))
    assert "echo:payload" in only_failed and "db:migrate</td>" not in only_failed
    by_task = text(viewer.get(url("changelist") + "?name=db:migrate"))
    assert str(failed.pk)[:8] not in by_task and "db:migrate" in by_task
    by_id = text(viewer.get(url("changelist") + f"?q={failed.pk}"))
    assert str(failed.pk)[:8] in by_id and "1 result" in by_id


def test_payload_result_error_and_traceback_are_text() -> None:
    run = failed_run(
        payload={"x": SCRIPT}, result={"y": SCRIPT}, error=SCRIPT, traceback=f"Traceback\n{SCRIPT}"
    )
    viewer = staff("viewer", "view_dashboard")
    for page in (url("changelist"), url("change", run.pk)):
        body = text(viewer.get(page))
        assert SCRIPT not in body
        assert "&lt;script&gt;" in body


def test_the_retry_action_requeues_failed_runs_only() -> None:
    failed = failed_run()
    done = TaskRun.objects.create(name="echo:payload", status=RunStatus.SUCCEEDED)
    manager = staff("manager", "manage_tasks")
    chosen = {"action": "retry_selected", "_selected_action": [str(failed.pk), str(done.pk)]}
    page = text(manager.post(url("changelist"), chosen, follow=True))
    assert "Queued 1 failed run(s) again." in page and "Left 1 run(s) that had not failed." in page
    failed.refresh_from_db()
    assert failed.status == RunStatus.QUEUED
    assert [m.run_id for m in queues.list("default")] == [str(failed.pk)]
    forged = {"action": "retry_selected", "_selected_action": [str(failed.pk), "1 OR 1=1"]}
    page = text(manager.post(url("changelist"), forged, follow=True))  # not Django's 500
    assert "&#x27;1 OR 1=1&#x27; is no run id." in page


def test_retry_and_remove_one_run_from_its_page() -> None:
    run = failed_run(restarts=2)  # an attempt whose worker was lost twice
    manager = staff("manager", "manage_tasks")
    page = text(manager.get(url("change", run.pk)))
    assert 'value="Retry"' in page
    assert "Restarts after a lost worker" in page
    assert manager.post(url("retry", run.pk))["Location"] == url("change", run.pk)
    run.refresh_from_db()
    assert (run.status, run.restarts) == (RunStatus.QUEUED, 0)  # a fresh first attempt
    manager.post(url("remove", run.pk))  # queued: not finished, so it stays
    assert TaskRun.objects.filter(pk=run.pk).exists()
    TaskRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED)
    assert manager.post(url("remove", run.pk))["Location"] == url("changelist")
    assert not TaskRun.objects.filter(pk=run.pk).exists()


def test_the_remove_action_keeps_unfinished_runs() -> None:
    failed = failed_run()
    running = TaskRun.objects.create(name="echo:payload", status=RunStatus.RUNNING)
    manager = staff("manager", "manage_tasks")
    chosen = {"action": "remove_selected", "_selected_action": [str(failed.pk), str(running.pk)]}
    page = text(manager.post(url("changelist"), chosen, follow=True))
    assert "Removed 1 finished run(s)." in page
    assert list(TaskRun.objects.values_list("pk", flat=True)) == [running.pk]


def test_progress_bars_and_live_updates_while_running() -> None:
    viewer = staff("viewer", "view_dashboard")
    done = TaskRun.objects.create(name="echo:payload", status=RunStatus.SUCCEEDED)
    assert "data-taskkit-live" not in text(viewer.get(url("changelist")))
    assert "data-taskkit-live" not in text(viewer.get(url("change", done.pk)))
    running = TaskRun.objects.create(
        name="echo:payload", status=RunStatus.RUNNING, progress_done=1, progress_total=4
    )
    page = text(viewer.get(url("changelist")))
    assert '<progress value="1" max="4"></progress> 1/4' in page
    assert 'data-taskkit-live="3"' in page and "taskkit/live.js" in page
    assert 'data-taskkit-live="3"' in text(viewer.get(url("change", running.pk)))


def test_search_by_short_id_error_text_and_payload_content() -> None:
    first = failed_run(payload={"order": "A-1042"}, error="KeyError: 'customer'")
    second = failed_run(payload={"order": "B-7"}, error="ValueError: negative amount")
    viewer = staff("viewer", "view_dashboard")

    def found(term: str) -> set[str]:
        page = text(viewer.get(url("changelist"), {"q": term}))
        return {str(run.pk)[:8] for run in (first, second) if str(run.pk)[:8] in page}

    assert found(str(first.pk)[:8]) == {str(first.pk)[:8]}  # the short id the list shows
    assert found(str(second.pk)[:8].upper()) == {str(second.pk)[:8]}
    assert found("negative amount") == {str(second.pk)[:8]}
    assert found("a-1042") == {str(first.pk)[:8]}  # payload content, any case
    assert found("echo:payload") == {str(first.pk)[:8], str(second.pk)[:8]}
    assert found("nothing like it") == set()


def test_times_have_seconds_and_the_zone_and_wait_and_duration_are_columns(settings: Any) -> None:
    from datetime import UTC, datetime

    settings.TIME_ZONE = "Europe/Paris"
    queued = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)
    run = TaskRun.objects.create(
        name="echo:payload",
        status=RunStatus.SUCCEEDED,
        created_at=queued,
        started_at=queued.replace(second=12),
        finished_at=queued.replace(second=12, microsecond=250_000),
    )
    viewer = staff("viewer", "view_dashboard")
    listing = text(viewer.get(url("changelist")))
    assert "2026-01-05 09:00:00 CET" in listing  # queued at, in the project's zone
    assert "12 s" in listing and "0.25 s" in listing  # the wait, then the duration
    detail = text(viewer.get(url("change", run.pk)))
    assert "2026-01-05 09:00:12 CET" in detail  # started at


def test_failed_attempts_are_a_table() -> None:
    history = [
        {"attempt": 1, "error": "ValueError: once", "exception": "builtins.ValueError",
         "finished_at": "2026-01-05T08:00:00+00:00"},
        {"attempt": 2, "error": f"ValueError: {SCRIPT}", "exception": "builtins.ValueError",
         "finished_at": "2026-01-05T08:01:00+00:00"},
    ]  # fmt: skip
    run = failed_run(history=history)
    viewer = staff("viewer", "view_dashboard")
    detail = text(viewer.get(url("change", run.pk)))
    assert 'class="taskkit-attempts"' in detail
    assert "<td>1</td><td>2026-01-05 08:00:00 UTC</td><td>builtins.ValueError</td>" in detail
    assert SCRIPT not in detail and "ValueError: &lt;script&gt;" in detail


@pytest.mark.parametrize("stopped", [True, False], ids=["stopped", "thread pool"])
def test_stop_a_running_run_asks_first_and_says_what_happened(
    stopped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def cancel_running(run_id: str) -> bool:
        asked.append(str(run_id))
        return stopped

    monkeypatch.setattr("taskkit.admin.runs.cancel_running", cancel_running)
    run = TaskRun.objects.create(name="echo:payload", status=RunStatus.RUNNING)
    viewer, manager = staff("viewer", "view_dashboard"), staff("manager", "manage_tasks")
    assert 'value="Stop"' not in text(viewer.get(url("change", run.pk)))
    assert viewer.post(url("stop", run.pk)).status_code == 403
    assert 'value="Stop"' in text(manager.get(url("change", run.pk)))
    assert manager.get(url("stop", run.pk)).status_code == 405
    asking = text(manager.post(url("stop", run.pk)))
    assert "Are you sure?" in asking and not asked
    page = text(manager.post(url("stop", run.pk), {"confirm": "yes"}, follow=True))
    assert asked == [str(run.pk)]
    assert ("it is cancelled" in page) is stopped
    assert ("a thread pool cannot" in page) is not stopped


def test_stopping_a_run_that_is_not_running_says_so() -> None:
    run = failed_run()
    manager = staff("manager", "manage_tasks")
    assert 'value="Stop"' not in text(manager.get(url("change", run.pk)))
    page = text(manager.post(url("stop", run.pk), {"confirm": "yes"}, follow=True))
    assert f"No running run {run.pk}." in page


def test_a_filter_or_search_no_database_stores_is_an_invalid_lookup_not_a_500() -> None:
    """NUL: PostgreSQL refuses it in a query, so Django's "invalid lookup" page answers."""
    viewer = staff("viewer", "view_dashboard")
    for query in ("q=%00", "status=%00", "name=a%00b"):
        response = viewer.get(f"{url('changelist')}?{query}")
        assert (response.status_code, response["Location"]) == (302, f"{url('changelist')}?e=1")
    assert viewer.get(f"{url('changelist')}?q=a%5Cx00").status_code == 200  # the text \x00
