"""Celery's result backend over the run table: each status read as Celery's state, nothing stored."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, cast

import pytest
from celery import Celery, current_app, states
from celery.exceptions import SecurityError, TaskRevokedError, TimeoutError
from django.utils import timezone

from taskkit.bridge.result_backend import (
    BACKEND,
    RunTableBackend,
    default_to_run_table,
    record_unsent,
)
from taskkit.bridge.work.message import row_id
from taskkit.bridge.work.register import celery_options
from taskkit.models import RunStatus, TaskRun
from taskkit.registry import get_task
from tests.apps.nested.tasks.echo.fail import EchoError

pytestmark = pytest.mark.django_db


@pytest.fixture
def app() -> Celery:
    app = Celery("result-backend-tests", set_as_current=False)
    app.conf.update(result_backend=BACKEND)
    return app


def row(status: RunStatus, **fields: Any) -> str:
    run = TaskRun.objects.create(name="echo:fail", status=status, queue="q", **fields)
    return str(run.pk)


def failed_fields(history: bool = True) -> dict[str, Any]:
    error = "EchoError: failed with {'n': 2}"
    entry = {"attempt": 1, "error": error, "exception": f"{EchoError.__module__}.EchoError"}
    return {
        "error": error,
        "traceback": f"Traceback (most recent call last):\n  ...\n{error}",
        "history": [entry] if history else [],
    }


def test_the_app_of_the_tests_reads_the_run_table() -> None:
    assert isinstance(current_app.backend, RunTableBackend)


def test_each_status_is_read_as_celerys_state(app: Celery) -> None:
    done = row(RunStatus.SUCCEEDED, result={"a": 1}, finished_at=timezone.now(), worker="w@h")
    got = app.AsyncResult(done)
    assert (got.state, got.result, got.ready(), got.successful()) == ("SUCCESS", {"a": 1}, 1, 1)
    assert (got.name, got.worker, got.queue, got.retries) == ("echo:fail", "w@h", "q", 0)
    assert got.get(timeout=1) == {"a": 1}

    for status in (RunStatus.QUEUED, RunStatus.SCHEDULED):
        assert app.AsyncResult(row(status)).state == states.PENDING
    running = app.AsyncResult(row(RunStatus.RUNNING, worker="w@h"))
    assert (running.state, running.result) == (states.STARTED, {"hostname": "w@h"})
    assert app.AsyncResult(str(uuid.uuid4())).state == states.PENDING  # no row (yet)
    assert app.AsyncResult("not-a-run-id").state == states.PENDING


def test_a_failed_run_raises_its_recorded_exception(app: Celery) -> None:
    failed = app.AsyncResult(row(RunStatus.FAILED, **failed_fields()))
    assert failed.state == states.FAILURE
    assert isinstance(failed.result, EchoError) and str(failed.result) == "failed with {'n': 2}"
    assert "EchoError: failed with" in str(failed.traceback)
    with pytest.raises(EchoError, match="failed with"):
        failed.get(timeout=1)


def test_an_exception_is_rebuilt_from_the_traceback_of_an_older_row(app: Celery) -> None:
    """Rows recorded before history entries kept their class: the traceback names it."""
    old = app.AsyncResult(row(RunStatus.FAILED, **failed_fields(history=False)))
    with pytest.raises(Exception, match="failed with") as raised:
        old.get(timeout=1)
    assert type(raised.value).__name__ == "EchoError"


def test_a_class_from_a_module_not_imported_here_stands_in_under_its_name(app: Celery) -> None:
    fields = failed_fields()
    fields["history"][0]["exception"] = "shop.not_imported.Late"
    fields["error"] = "Late: the parcel is late"
    got = app.AsyncResult(row(RunStatus.FAILED, **fields))
    assert (type(got.result).__name__, str(got.result)) == ("Late", "the parcel is late")


def test_a_recorded_name_that_is_no_exception_is_refused(app: Celery) -> None:
    fields = failed_fields()
    fields["history"][0]["exception"] = "os.system"
    with pytest.raises(SecurityError):
        app.AsyncResult(row(RunStatus.FAILED, **fields)).get(timeout=1)


def test_a_retry_waiting_is_retry_with_the_attempts_exception(app: Celery) -> None:
    due = timezone.now() + timedelta(hours=1)
    retry = app.AsyncResult(row(RunStatus.SCHEDULED, scheduled_for=due, **failed_fields()))
    assert (retry.state, type(retry.result)) == (states.RETRY, EchoError)
    assert not retry.ready()
    sent = app.AsyncResult(row(RunStatus.QUEUED, attempt=2, **failed_fields()))
    assert (sent.state, sent.retries) == (states.RETRY, 1)


def test_a_cancelled_run_is_revoked(app: Celery) -> None:
    cancelled = app.AsyncResult(row(RunStatus.CANCELLED))
    assert str(cancelled.state) == states.REVOKED
    with pytest.raises(TaskRevokedError):
        cancelled.get(timeout=1)


def test_a_wait_ends_at_its_timeout(app: Celery) -> None:
    with pytest.raises(TimeoutError):
        app.AsyncResult(row(RunStatus.RUNNING)).get(timeout=0.1, interval=0.05)


def test_storing_writes_nothing(app: Celery) -> None:
    backend = app.backend
    missing = str(uuid.uuid4())
    backend.mark_as_done(missing, {"a": 1})
    backend.mark_as_failure(missing, ValueError("x"))
    backend.mark_as_retry(missing, ValueError("x"))
    backend.mark_as_started(missing, hostname="w")
    assert not TaskRun.objects.filter(pk=missing).exists()
    running = row(RunStatus.RUNNING)
    backend.mark_as_done(running, {"a": 1})
    assert TaskRun.objects.get(pk=running).status == RunStatus.RUNNING


def test_an_app_without_a_result_backend_gets_the_run_table() -> None:
    configured = Celery("configured", set_as_current=False)
    configured.conf.update(broker_url="memory://")  # reads its settings now
    default_to_run_table(configured)
    assert isinstance(configured.backend, RunTableBackend)
    later = Celery("later", set_as_current=False)
    default_to_run_table(later)  # before it reads its settings: when it does
    assert not cast(Any, later).configured  # public, not in the stubs
    assert isinstance(later.backend, RunTableBackend)


@pytest.mark.parametrize(
    "own", [{"result_backend": "cache+memory://"}, {"result_backend": "disabled"}]
)
def test_a_result_backend_the_project_set_is_kept(own: dict[str, str]) -> None:
    app = Celery("own", set_as_current=False)
    app.conf.update(own)
    default_to_run_table(app)
    assert app.conf.result_backend == own["result_backend"]
    passed = Celery("passed", backend="cache+memory://", set_as_current=False)
    default_to_run_table(passed)
    assert passed.conf.result_backend == "cache+memory://"


def test_taskkit_tasks_leave_results_to_task_ignore_result() -> None:
    """Not ignored by default, so ``apply_async(...).get()`` waits; a project may ignore them."""
    assert "ignore_result" not in celery_options(get_task("echo:payload"))
    assert current_app.tasks["echo:payload"].ignore_result is False


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "my-own-id"])
def test_a_canvas_step_never_sent_is_a_failed_run_whatever_its_id(task_id: str) -> None:
    """A chord's body left unsent by an error: recorded under the id its worker would use."""
    context = {"task": "echo:payload", "queue": "q", "run_id": task_id}
    step = current_app.tasks["echo:payload"].s(payload={"n": 1}, context=context)
    step.set(task_id=task_id)
    record_unsent(step, EchoError("the header failed"))
    (run,) = TaskRun.objects.all()
    assert str(run.pk) == row_id(task_id)
    assert (run.name, run.queue, run.status, run.payload) == (
        "echo:payload",
        "q",
        RunStatus.FAILED,
        {"n": 1},
    )
    assert run.error.startswith("EchoError: the header failed")
