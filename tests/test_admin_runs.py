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


def test_retry_and_remove_one_run_from_its_page() -> None:
    run = failed_run()
    manager = staff("manager", "manage_tasks")
    assert 'value="Retry"' in text(manager.get(url("change", run.pk)))
    assert manager.post(url("retry", run.pk))["Location"] == url("change", run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
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


def test_progress_bars_and_the_reload_while_running() -> None:
    viewer = staff("viewer", "view_dashboard")
    TaskRun.objects.create(name="echo:payload", status=RunStatus.SUCCEEDED)
    assert 'http-equiv="refresh"' not in text(viewer.get(url("changelist")))
    TaskRun.objects.create(
        name="echo:payload", status=RunStatus.RUNNING, progress_done=1, progress_total=4
    )
    page = text(viewer.get(url("changelist")))
    assert '<progress value="1" max="4"></progress> 1/4' in page
    assert 'http-equiv="refresh"' in page
