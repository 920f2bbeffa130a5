"""taskkit's ``django.tasks`` backend in process: enqueue, results from the run table, checks.

The runs themselves are run by a real worker in ``tests/integration/test_django_tasks.py``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import django
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
from taskkit.bridge.carrier import CARRIER
from taskkit.exceptions import exception_path
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
    errors: list[Any] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.extend(error.exception_class_path for error in task_result.errors)
        errors.extend(task_result.errors)

    carried = taskkit_task(jobs.fail.module_path)
    assert carried is not None
    task_finished.connect(receiver)
    try:
        with pytest.raises(ValueError, match="no"):
            carried.run_inline({"args": ["no"], "kwargs": {}})
    finally:
        task_finished.disconnect(receiver)
    assert seen == ["builtins.ValueError"]
    assert [error.exception_class for error in errors] == [ValueError]
    assert errors[0].traceback.endswith("ValueError: no\n")
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


# --- the django.tasks contract (tests/integration/test_django_contract.py runs it on a worker)


def test_an_argument_json_cannot_carry_is_django_s_type_error(sent: list[dict[str, Any]]) -> None:
    """Django's backends raise ``TypeError("Unsupported type: …")``; this one too, and the
    error is still taskkit's ``InvalidPayload`` for code written against taskkit."""
    arguments: list[Any] = [datetime.now(), {1, 2}, object()]
    for argument in arguments:
        with pytest.raises(TypeError, match="Unsupported type") as raised:
            jobs.add.enqueue(argument, 1)
        assert isinstance(raised.value, taskkit.InvalidPayload)
        assert isinstance(raised.value, taskkit.PayloadNotJSON)
    raw: Any = b"bytes"
    assert jobs.add.using(queue_name="q").enqueue(raw, 1).args == ["bytes", 1]  # as Django
    with pytest.raises(TypeError, match="not JSON serializable"):
        taskkit.enqueue("echo:payload", {"when": datetime.now()})
    assert len(sent) == 1


def test_get_result_gives_the_task_as_enqueued(sent: list[dict[str, Any]]) -> None:
    later = timezone.now() + timedelta(hours=1)
    for task in (
        jobs.add,
        jobs.add.using(queue_name="elsewhere", priority=20),
        jobs.add.using(run_after=later, priority=-3),
    ):
        result = task.enqueue(1, 2)
        fetched = jobs.add.get_result(result.id)
        assert (fetched.task.queue_name, fetched.task.priority) == (task.queue_name, task.priority)
        assert fetched.task.run_after == task.run_after
        assert fetched.enqueued_at == result.enqueued_at
        assert fetched == result
    plain = jobs.add.enqueue(1, 2)
    assert TaskRun.objects.get(pk=plain.id).payload == {"args": [1, 2], "kwargs": {}}


def test_task_routes_route_a_task_left_on_the_default_queue(sent: list[dict[str, Any]]) -> None:
    """The default ``queue_name`` yields to ``task_routes`` (on the task's path); any other
    ``queue_name`` wins over them, as a queue given to taskkit's enqueue does."""
    from celery import current_app

    def reset_router() -> None:  # Celery caches the prepared routes and the router
        current_app.amqp.flush_routes()
        current_app.amqp.__dict__.pop("router", None)

    routes = current_app.conf.task_routes
    current_app.conf.task_routes = {"tests.apps.single.jobs.*": {"queue": "routed-dt"}}
    reset_router()
    try:
        routed = jobs.add.enqueue(1, 2)
        chosen = jobs.add.using(queue_name="chosen-dt").enqueue(1, 2)
    finally:
        current_app.conf.task_routes = routes
        reset_router()
    assert [m["queue"] for m in sent] == ["routed-dt", "chosen-dt"]
    assert TaskRun.objects.get(pk=routed.id).queue == "routed-dt"
    assert jobs.add.get_result(routed.id).task.queue_name == "default"  # as enqueued
    assert jobs.add.get_result(chosen.id).task.queue_name == "chosen-dt"


def test_a_task_of_another_backend_is_sent_with_using(sent: list[dict[str, Any]]) -> None:
    from tests.apps.single import contract

    task = contract.declared_on_dummy.using(backend="default")
    result = task.enqueue(2, 3)
    assert (result.backend, result.task) == ("default", task)
    (message,) = sent
    payload = {"args": [2, 3], "kwargs": {}, "using": {"backend": "default"}}
    assert message["kwargs"]["payload"] == payload
    assert task.get_result(result.id) == result
    with pytest.raises(taskkit.InvalidPayload, match="not a CeleryBackend"):
        taskkit.enqueue(contract.declared_on_dummy.module_path, {"args": [2, 3], "kwargs": {}})


def test_a_celery_backend_without_taskkit_installed_is_reported() -> None:
    """``taskkit.E032``: found by the backend's own ``check()``, which Django's tasks check
    runs, as taskkit's checks do not run without its app."""
    from django.core.checks import run_checks
    from django.test import modify_settings

    from taskkit.backends.compat import task_backends

    assert [e.id for e in task_backends["default"].check()] == []
    with modify_settings(INSTALLED_APPS={"remove": ["taskkit"]}):
        errors = task_backends["default"].check()
        assert [e.id for e in errors] == ["taskkit.E032"]
        assert "'taskkit' is not in INSTALLED_APPS" in errors[0].msg
        if django.VERSION >= (6, 0):  # the backport's check runs from its own app
            assert "taskkit.E032" in [e.id for e in run_checks()]


@pytest.mark.parametrize("name", ["InvalidTask", "InvalidTaskError"])
def test_the_backport_s_invalid_task_error_under_either_name(name: str) -> None:
    """django-tasks 0.12 says ``InvalidTaskError``, its next release ``InvalidTask``."""
    from types import ModuleType

    from taskkit.backends.compat import invalid_task_class

    error = type(name, (Exception,), {})
    module = ModuleType("django_tasks.exceptions")
    setattr(module, name, error)
    assert invalid_task_class(module) is error
    with pytest.raises(AttributeError):
        invalid_task_class(ModuleType("empty"))


def test_a_task_that_exits_fails_its_run_and_the_process_lives_on() -> None:
    """``SystemExit`` and ``KeyboardInterrupt`` from a task's code: recorded as themselves,
    and Celery gets ``TaskExited`` (raised on, they would end a prefork child)."""
    from types import SimpleNamespace

    from taskkit.backends.celery import taskkit_task
    from taskkit.bridge.work.run import run_message
    from tests.apps.single import contract

    for task, path in (
        (contract.failing_task_system_exit, "builtins.SystemExit"),
        (contract.exit_task, "builtins.SystemExit"),
        (contract.failing_task_keyboard_interrupt, "builtins.KeyboardInterrupt"),
    ):
        assert taskkit_task(task.module_path) is not None
        run_id = str(uuid.uuid4())
        ctask: Any = SimpleNamespace(
            name=CARRIER, request=SimpleNamespace(id=run_id, hostname="w1@h", delivery_info={})
        )
        context = {"run_id": run_id, "task": task.module_path, "queue": "default"}
        with pytest.raises(taskkit.TaskExited, match=path.rpartition(".")[2]):
            run_message(ctask, {"args": [], "kwargs": {}}, context)
        row = TaskRun.objects.get(pk=run_id)
        assert row.status == RunStatus.FAILED
        assert [entry["exception"] for entry in row.history] == [path]
        result = task.get_result(run_id)
        assert result.errors[0].exception_class_path == path


def test_celery_s_own_shutdown_still_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """``WorkerShutdown``/``WorkerTerminate`` (``SystemExit`` subclasses Celery raises from its
    signal handlers, inside a solo pool's running task) are not taken for the task's."""
    from types import SimpleNamespace

    from celery.exceptions import WorkerShutdown, WorkerTerminate

    from taskkit.bridge.work import run

    for stop in (WorkerShutdown, WorkerTerminate):

        def stopped(task: Any, event: Any, stop: type[BaseException] = stop) -> None:
            raise stop(0)

        monkeypatch.setattr(run, "call", stopped)
        run_id = str(uuid.uuid4())
        ctask: Any = SimpleNamespace(
            name="echo:payload",
            request=SimpleNamespace(id=run_id, hostname="w1@h", delivery_info={}),
        )
        with pytest.raises(stop):
            run.run_message(ctask, {}, {"run_id": run_id})


def test_a_taskkit_task_that_exits_fails_its_run_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same worker path runs taskkit's own tasks: ``sys.exit()`` in one fails its run."""
    from types import SimpleNamespace

    from taskkit.bridge.work import run

    def exits(task: Any, event: Any) -> None:
        raise SystemExit(3)

    monkeypatch.setattr(run, "call", exits)
    run_id = str(uuid.uuid4())
    ctask: Any = SimpleNamespace(
        name="echo:payload", request=SimpleNamespace(id=run_id, hostname="w1@h", delivery_info={})
    )
    with pytest.raises(taskkit.TaskExited, match="SystemExit: 3"):
        run.run_message(ctask, {}, {"run_id": run_id})
    row = TaskRun.objects.get(pk=run_id)
    assert (row.status, row.error) == (RunStatus.FAILED, "SystemExit: 3")
    assert row.history[-1]["exception"] == "builtins.SystemExit"
