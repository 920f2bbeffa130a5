"""taskkit's ``django.tasks`` backend in process: enqueue, results from the run table, checks.

The runs themselves are run by a real worker in ``tests/integration/test_django_tasks.py``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

import taskkit
from taskkit.backends import CeleryBackend
from taskkit.backends.celery import defined_paths, django_task
from taskkit.backends.compat import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
)
from taskkit.backends.results import exception_path
from taskkit.bridge.carrier import CARRIER
from taskkit.models import RunStatus, TaskRun
from tests.apps.single import jobs

pytestmark = pytest.mark.django_db(transaction=True)
ADD = "tests.apps.single.jobs.add"


def test_the_backend_says_what_it_supports() -> None:
    backend = jobs.add.get_backend()
    assert isinstance(backend, CeleryBackend)
    assert (backend.supports_defer, backend.supports_async_task) == (True, True)
    assert (backend.supports_get_result, backend.supports_priority) == (True, True)


def test_enqueue_sends_the_carrier_and_stores_the_run(sent: list[dict[str, Any]]) -> None:
    seen: list[Any] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append(task_result)

    task_enqueued.connect(receiver)
    try:
        result = jobs.add.enqueue(2, b=3)
    finally:
        task_enqueued.disconnect(receiver)
    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs) == ([2], {"b": 3})
    assert [r.id for r in seen] == [result.id]
    (message,) = sent
    assert message["name"] == CARRIER and message["shadow"] == ADD
    assert message["kwargs"]["payload"] == {"args": [2], "kwargs": {"b": 3}}
    assert message["kwargs"]["context"]["task"] == ADD
    row = TaskRun.objects.get(pk=result.id)  # track="all": the row is there at once
    assert (row.name, row.status, row.queue) == (ADD, RunStatus.QUEUED, "default")
    fetched = jobs.add.get_result(result.id)
    assert fetched.status == TaskResultStatus.READY and fetched.args == [2]


def test_a_deferred_run_is_a_delayed_row(sent: list[dict[str, Any]]) -> None:
    when = timezone.now() + timedelta(hours=1)
    result = jobs.add.using(run_after=when, queue_name="later").enqueue(1, 1)
    assert sent == []  # no ETA message: the scheduler sends it when due
    row = TaskRun.objects.get(pk=result.id)
    assert (row.status, row.scheduled_for, row.queue) == (RunStatus.SCHEDULED, when, "later")
    assert jobs.add.get_result(result.id).status == TaskResultStatus.READY


def test_results_follow_the_run_table(sent: list[dict[str, Any]]) -> None:
    result = jobs.add.enqueue(1, 2)
    now = timezone.now()
    TaskRun.objects.filter(pk=result.id).update(
        status=RunStatus.RUNNING, started_at=now, worker="w1"
    )
    running = jobs.add.get_result(result.id)
    assert running.status == TaskResultStatus.RUNNING
    assert (running.started_at, running.worker_ids) == (now, ["w1"])
    TaskRun.objects.filter(pk=result.id).update(
        status=RunStatus.SUCCEEDED, finished_at=now, result=3
    )
    running.refresh()  # through the backend's get_result
    refreshed: Any = running
    assert refreshed.status == TaskResultStatus.SUCCESSFUL and refreshed.return_value == 3
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n'
    TaskRun.objects.filter(pk=result.id).update(
        status=RunStatus.FAILED,
        error="ValueError: boom",
        traceback=trace,
        history=[{"attempt": 1, "error": "KeyError: 'k'"}, {"attempt": 2, "error": "x"}],
    )
    failed = jobs.add.get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in failed.errors] == [
        "builtins.KeyError",
        "builtins.ValueError",
    ]
    assert failed.errors[-1].traceback == trace
    TaskRun.objects.filter(pk=result.id).update(status=RunStatus.CANCELLED, error="Deleted.")
    cancelled = jobs.add.get_result(result.id)
    assert cancelled.status == TaskResultStatus.FAILED
    assert cancelled.errors[-1].exception_class_path == "taskkit.exceptions.RunCancelled"


@pytest.mark.parametrize("result_id", [str(uuid.uuid4()), "not-a-uuid", ""])
def test_unknown_results(result_id: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        jobs.add.get_result(result_id)


def test_a_run_of_a_taskkit_task_is_no_django_result(sent: list[dict[str, Any]]) -> None:
    handle = taskkit.enqueue("echo:payload", {"a": 1})
    with pytest.raises(TaskResultDoesNotExist):
        jobs.add.get_result(handle.id)


def test_bad_input_is_refused_and_sends_nothing(sent: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidTask):
        jobs.add.using(priority=101).enqueue(1, 2)  # Django's range is -100 to 100
    with pytest.raises(InvalidTask):
        jobs.add.using(run_after=datetime(2030, 1, 1)).enqueue(1, 2)  # naive
    not_json: Any = {1, 2}
    with pytest.raises(taskkit.InvalidPayload):
        jobs.add.enqueue(not_json, 3)
    assert sent == [] and not TaskRun.objects.exists()


def test_a_task_outside_the_installed_apps_is_refused(sent: list[dict[str, Any]]) -> None:
    from tests.apps.custom.outside import outside

    with pytest.raises(InvalidTask, match="installed app"):
        outside.enqueue()
    assert sent == [] and not TaskRun.objects.exists()


def test_names_resolve_only_to_celery_backend_tasks_of_installed_apps() -> None:
    assert django_task(ADD) is jobs.add
    assert taskkit.get_task(ADD).name == ADD
    assert taskkit.get_task(ADD).meta.track == "all"
    for name in (
        "os.system",
        "tests.apps.single.jobs.missing",
        "tests.apps.custom.outside.outside",
        "x",
    ):
        assert django_task(name) is None
        with pytest.raises(taskkit.TaskNotFound):
            taskkit.get_task(name)


@pytest.mark.parametrize(
    ("traceback", "error", "path"),
    [
        ("Traceback …\n  File …\nValueError: boom", "", "builtins.ValueError"),
        ("Traceback …\nmyapp.errors.Gone: away\n", "", "myapp.errors.Gone"),
        ("", "KeyError: 'k'", "builtins.KeyError"),
        ("", "InvalidPayload: too deep", "taskkit.exceptions.InvalidPayload"),
        ("", "TaskNotFound: Unknown task 'x'", "taskkit.exceptions.TaskNotFound"),
        ("", "", "builtins.Exception"),
    ],
)
def test_exception_paths(traceback: str, error: str, path: str) -> None:
    assert exception_path(traceback, error) == path


def test_defined_tasks_are_listed_with_taskkit_s_own() -> None:
    listed = taskkit.all_tasks()
    assert ADD in defined_paths()  # tests.apps.single.jobs is imported above
    assert listed[ADD].description == "Add two numbers."
    assert listed[ADD].meta.track == "all"
    assert "echo:payload" in listed  # taskkit's own are still there
    assert list(listed) == sorted(listed)


def test_a_task_outside_the_installed_apps_is_not_listed() -> None:
    from tests.apps.custom.outside import outside

    assert outside.module_path in defined_paths()
    assert outside.module_path not in taskkit.all_tasks()


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        ({"args": [1]}, "payload is"),
        ({"args": 1, "kwargs": {}}, "payload is"),
        ({"args": [1], "kwargs": [], "x": 1}, "payload is"),
        ({"args": [1], "kwargs": {}}, "missing a required argument: 'b'"),
        ({"args": [1, 2], "kwargs": {"c": 3}}, "unexpected keyword argument 'c'"),
    ],
)
def test_a_payload_that_cannot_call_the_function_is_refused(
    sent: list[dict[str, Any]], payload: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(taskkit.InvalidPayload, match=complaint):
        taskkit.enqueue(ADD, payload)
    with pytest.raises(taskkit.InvalidPayload, match="missing a required argument"):
        jobs.add.enqueue(1)  # type: ignore[call-arg]
    assert sent == [] and not TaskRun.objects.exists()
    taskkit.enqueue("tests.apps.single.jobs.where", {"args": [], "kwargs": {"label": "x"}})
    assert len(sent) == 1  # the context argument is not the caller's


def test_the_finished_signal_and_get_result_name_the_exception_alike() -> None:
    """Both spell the class ``module.Qualname`` (``builtins.ValueError``): importable."""
    from taskkit.backends.celery import taskkit_task
    from taskkit.backends.compat import task_finished
    from taskkit.exceptions import class_path

    seen: list[str] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.extend(error.exception_class_path for error in task_result.errors)

    carried = taskkit_task(jobs.fail.module_path)
    assert carried is not None
    task_finished.connect(receiver)
    try:
        with pytest.raises(ValueError, match="no"):
            carried.run_inline({"args": ["no"], "kwargs": {}})
    finally:
        task_finished.disconnect(receiver)
    assert seen == ["builtins.ValueError"]
    assert class_path(ValueError("x")) == class_path(ValueError) == "builtins.ValueError"
    assert class_path(taskkit.RunFailed) == "taskkit.exceptions.RunFailed"


def test_unknown_paths_are_not_kept_and_known_ones_resolve() -> None:
    """4,500 unknown 8,000-character names once grew a web process by 37 MB for good."""
    from taskkit.backends import celery as backend_module

    before = dict(backend_module._made)
    for i in range(5_000):
        assert backend_module.taskkit_task(f"tests.apps.single.jobs.nope{i}" + "x" * 8_000) is None
        assert backend_module.taskkit_task(f"tests.apps.single.jobs.missing{i}") is None
    assert backend_module._made == before
    made = backend_module.taskkit_task(jobs.add.module_path)
    assert made is not None and made is backend_module.taskkit_task(jobs.add.module_path)
