"""Django's own ``tests/tasks/`` contract, adapted to ``CeleryBackend`` with a real worker.

Rewritten from the backend-agnostic tests of Django's ``tests/tasks/``
(``test_tasks.py``, ``test_immediate_backend.py``, ``test_dummy_backend.py``;
the django-tasks backport carries the same ones) to run on Django 6.0 and on
Django 5.2 with the backport. Each test keeps its upstream name, with its
upstream class as a prefix where two classes share one (``test_immediate_…``,
``test_dummy_…``); the functions are those of Django's ``tests/tasks/tasks.py``,
in :mod:`tests.apps.single.contract`. A run is READY until a worker takes it,
so where upstream reads a result at once, these wait for the worker
(:func:`finished`), and results compared whole are enqueued on a queue no
worker consumes (:data:`PARKED`).

Left out, and why:

* ``TaskTestCase``: ``test_task_decorator``, ``test_using_unknown_backend``,
  ``test_using_missing_backend``, ``test_using_creates_new_instance``,
  ``test_chained_using``, ``test_call_task``, ``test_call_task_async``,
  ``test_call_async_task``, ``test_call_async_task_sync``,
  ``test_invalid_function``, ``test_get_backend``, ``test_name``,
  ``test_module_path``, ``test_pickle_task``, ``test_unpickle_arbitrary_string``,
  ``test_unpickle_non_task_object``, ``test_no_backends``,
  ``test_takes_context_without_taking_context``, ``test_run_after_in_decorator``,
  ``test_task_result_comparability_in_priority_queue``,
  ``test_task_result_equality``, ``test_task_result_equality_not_implemented``,
  ``test_task_result_hash_*`` and ``test_task_result_lt_*``: they test
  ``Task``, ``TaskResult`` or the backend handler, which Django implements for
  every backend (and the last ones are newer than Django 6.0).
* ``test_pickle_task_result``: newer than Django 6.0, whose ``Task`` does not
  pickle (its function is not reachable by its name: the name is the ``Task``).
* ``test_task_error_invalid_exception``, ``test_task_error_unknown_module``:
  they test how ``TaskError`` resolves a path it is handed; the paths this
  backend hands out are tested to resolve (``test_immediate_catches_exception``,
  ``test_signals_on_the_worker``).
* ``ImmediateBackendTestCase``: ``test_using_correct_backend`` (its
  ``options``: a backend's own), ``test_cannot_get_result``,
  ``test_cannot_refresh_result`` and ``test_cannot_pass_run_after`` (this
  backend can: ``test_dummy_refresh_result``, ``test_run_after``);
  ``test_throws_keyboard_interrupt``: in-process, Ctrl-C must stop the caller,
  whereas on a worker a ``KeyboardInterrupt`` raised by the task is a failure
  of the run (``test_keyboard_interrupt_is_a_failure``);
  ``test_enqueue_logs``, ``test_failed_logs``,
  ``test_successful_task_no_none_type_in_logs``: Django's backends log on the
  ``django.tasks`` logger, taskkit on ``taskkit.runs`` (its own tests);
  ``ImmediateBackendTransactionTestCase``: taskkit sends a run when the
  transaction commits, the opposite of the immediate backend (taskkit's
  enqueue tests).
* ``DummyBackendTestCase``: ``test_enqueue_logs``, ``test_clear``,
  ``test_validate_disallowed_async_task`` and the ``results`` list: the dummy
  backend's own API; ``test_meaning_of_life_view`` and
  ``test_get_result_from_different_request`` (backport only): views of the
  backport's test project; the second is what every test here does, the
  worker being another process.
* ``test_custom_backend.py``, ``test_utils.py``, ``test_metadata.py``: about
  writing a backend, and Django's helpers.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings
from django.utils import timezone

from taskkit import queues
from taskkit.backends import CeleryBackend
from taskkit.backends.compat import (
    DEFAULT_TASK_QUEUE_NAME,
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultMismatch,
    TaskResultStatus,
    task_backends,
)
from taskkit.models import KnownQueue
from tests.apps.single import contract

from .conftest import REPO, Broker, start_worker, stop, worker_env
from .test_django_tasks import finished

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]
TIMEOUT = 60
#: A queue no worker consumes: a run there stays READY.
PARKED = "djc-parked"


@pytest.fixture
def parked() -> Iterator[str]:
    try:
        yield PARKED
    finally:
        queues.purge(PARKED)


# --- TaskTestCase (test_tasks.py) -------------------------------------------------------


def test_using_correct_backend() -> None:
    assert isinstance(task_backends["default"], CeleryBackend)
    assert contract.noop_task.get_backend() is task_backends["default"]


def test_enqueue_task(broker: Broker) -> None:
    result = contract.noop_task.enqueue()
    assert result.status == TaskResultStatus.READY
    assert result.task == contract.noop_task
    assert (result.args, result.kwargs) == ([], {})
    assert contract.noop_task.get_result(result.id).id == result.id
    assert finished(result).status == TaskResultStatus.SUCCESSFUL


def test_enqueue_task_async(broker: Broker) -> None:
    result = async_to_sync(contract.noop_task.aenqueue)()
    assert result.status == TaskResultStatus.READY
    assert result.task == contract.noop_task
    assert (result.args, result.kwargs) == ([], {})
    assert finished(result).status == TaskResultStatus.SUCCESSFUL


def test_enqueue_with_invalid_argument() -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        contract.noop_task.enqueue(datetime.now())


def test_aenqueue_with_invalid_argument() -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        async_to_sync(contract.noop_task.aenqueue)(datetime.now())


def test_using_priority() -> None:
    assert contract.noop_task.priority == 0
    assert contract.noop_task.using(priority=1).priority == 1
    assert contract.noop_task.priority == 0


def test_using_queue_name() -> None:
    assert contract.noop_task.queue_name == DEFAULT_TASK_QUEUE_NAME
    assert contract.noop_task.using(queue_name="queue_1").queue_name == "queue_1"
    assert contract.noop_task.queue_name == DEFAULT_TASK_QUEUE_NAME


def test_using_run_after() -> None:
    now = timezone.now()
    assert contract.noop_task.run_after is None
    assert contract.noop_task.using(run_after=now).run_after == now
    assert contract.noop_task.run_after is None


def test_refresh_result(parked: str) -> None:
    async def enqueue() -> Any:
        return await contract.noop_task.using(queue_name=parked).aenqueue()

    result = async_to_sync(enqueue)()
    original = dataclasses.asdict(result)
    result.refresh()
    assert dataclasses.asdict(result) == original
    async_to_sync(result.arefresh)()
    assert dataclasses.asdict(result) == original


def test_naive_datetime() -> None:
    with pytest.raises(InvalidTask, match="run_after must be an aware datetime"):
        contract.noop_task.using(run_after=datetime.now())


@pytest.mark.parametrize("priority", [-101, 101, 3.1])
def test_invalid_priority(priority: Any) -> None:
    with pytest.raises(InvalidTask, match="priority must be a whole number between -100 and 100"):
        contract.noop_task.using(priority=priority)
    for valid in (100, -100, 0):
        contract.noop_task.using(priority=valid)


def test_unknown_queue_name() -> None:
    """TASKS["celery"] lists its QUEUES; "default" lists none, which allows any name."""
    with pytest.raises(InvalidTask, match="Queue 'queue-2' is not valid for backend"):
        contract.noop_task.using(queue_name="queue-2", backend="celery")
    assert contract.noop_task.using(queue_name="queue-2").queue_name == "queue-2"


def test_get_result(parked: str) -> None:
    backend = task_backends["default"]
    result = backend.enqueue(contract.noop_task.using(queue_name=parked), [], {})
    assert contract.noop_task.get_result(result.id) == result


def test_get_result_async(parked: str) -> None:
    backend = task_backends["default"]
    task = contract.noop_task.using(queue_name=parked)

    async def both() -> tuple[Any, Any]:
        result = await backend.aenqueue(task, [], {})
        return result, await contract.noop_task.aget_result(result.id)

    result, fetched = async_to_sync(both)()
    assert fetched == result


def test_get_result_keeps_the_task_as_enqueued(parked: str) -> None:
    """``get_result`` gives the task's ``queue_name``, ``priority`` and ``run_after`` as
    enqueued, and the ``enqueued_at`` that ``enqueue`` gave."""
    later = timezone.now() + timedelta(days=1)
    for task in (
        contract.noop_task.using(queue_name=parked, priority=10),
        contract.noop_task.using(run_after=later, priority=-5),
    ):
        result = task.enqueue(1, two=3)
        fetched = contract.noop_task.get_result(result.id)
        assert fetched.task == task
        assert (fetched.task.queue_name, fetched.task.priority) == (task.queue_name, task.priority)
        assert fetched.task.run_after == task.run_after
        assert fetched.enqueued_at == result.enqueued_at
        assert fetched == result


def test_get_missing_result() -> None:
    with pytest.raises(TaskResultDoesNotExist):
        contract.noop_task.get_result("123")
    with pytest.raises(TaskResultDoesNotExist):
        async_to_sync(contract.noop_task.aget_result)("123")


def test_get_incorrect_result(parked: str) -> None:
    backend = task_backends["default"]
    result = backend.enqueue(contract.noop_task_async.using(queue_name=parked), [], {})
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        contract.noop_task.get_result(result.id)
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        async_to_sync(contract.noop_task.aget_result)(result.id)


# --- ImmediateBackendTestCase (test_immediate_backend.py), on a worker ------------------


@pytest.mark.parametrize("task", [contract.noop_task, contract.noop_task_async])
def test_immediate_enqueue_task(broker: Broker, task: Any) -> None:
    result = finished(task.enqueue(1, two=3))
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.is_finished is True
    assert None not in (result.started_at, result.last_attempted_at, result.finished_at)
    assert result.started_at >= result.enqueued_at
    assert result.finished_at >= result.started_at
    assert result.return_value is None
    assert result.task == task
    assert (result.args, result.kwargs) == ([1], {"two": 3})
    assert result.attempts == 1


@pytest.mark.parametrize("task", [contract.noop_task, contract.noop_task_async])
def test_immediate_enqueue_task_async(broker: Broker, task: Any) -> None:
    result = finished(async_to_sync(task.aenqueue)())
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.started_at >= result.enqueued_at
    assert result.return_value is None
    assert (result.args, result.kwargs, result.attempts) == ([], {}, 1)


@pytest.mark.parametrize(
    ("task", "exception", "message"),
    [
        (contract.failing_task_value_error, ValueError, "This task failed due to ValueError"),
        (contract.failing_task_system_exit, SystemExit, "This task failed due to SystemExit"),
    ],
)
def test_immediate_catches_exception(
    broker: Broker, task: Any, exception: type[BaseException], message: str
) -> None:
    result = finished(task.enqueue())
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    assert result.is_finished is True
    assert result.started_at >= result.enqueued_at
    assert result.finished_at >= result.started_at
    assert result.errors[0].exception_class is exception
    traceback = result.errors[0].traceback
    assert traceback.endswith(f"{exception.__name__}: {message}\n"), traceback
    assert result.task == task
    assert (result.args, result.kwargs) == ([], {})


def test_keyboard_interrupt_is_a_failure(broker: Broker) -> None:
    """Upstream's ``test_throws_keyboard_interrupt``, on a worker: see the module's docstring."""
    result = finished(contract.failing_task_keyboard_interrupt.enqueue())
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "builtins.KeyboardInterrupt"
    assert result.errors[0].exception_class is KeyboardInterrupt


def test_exit_task(broker: Broker) -> None:
    result = finished(contract.exit_task.enqueue())
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "builtins.SystemExit"


def test_immediate_complex_exception(broker: Broker) -> None:
    result = finished(contract.complex_exception.enqueue())
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    assert result.started_at >= result.enqueued_at
    assert result.finished_at >= result.started_at
    assert result._return_value is None
    assert result.errors[0].exception_class is ValueError
    assert 'ValueError(ValueError("This task failed"))' in result.errors[0].traceback
    assert result.task == contract.complex_exception
    assert (result.args, result.kwargs) == ([], {})


def test_immediate_complex_return_value(broker: Broker) -> None:
    result = finished(contract.complex_return_value.enqueue())
    assert result.status == TaskResultStatus.FAILED
    assert result.started_at >= result.enqueued_at
    assert result._return_value is None
    assert result.errors[0].exception_class is TypeError
    assert "Unsupported type" in result.errors[0].traceback


def test_immediate_result(broker: Broker) -> None:
    backend = task_backends["default"]
    result = finished(backend.enqueue(contract.calculate_meaning_of_life, [], {}))
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42


def test_immediate_result_async(broker: Broker) -> None:
    backend = task_backends["default"]
    result = async_to_sync(backend.aenqueue)(contract.calculate_meaning_of_life, [], {})
    assert finished(result).return_value == 42


def test_immediate_takes_context(broker: Broker) -> None:
    result = finished(contract.get_task_id.enqueue())
    assert result.return_value == result.id


def test_immediate_context(broker: Broker) -> None:
    result = finished(contract.context_attempt.enqueue(1))
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_immediate_validate_on_enqueue() -> None:
    task = contract.noop_task.using(queue_name="unknown_queue")
    backends = {"default": {"BACKEND": "taskkit.backends.CeleryBackend", "QUEUES": ["queue-1"]}}
    with override_settings(TASKS=backends):
        with pytest.raises(InvalidTask, match="Queue 'unknown_queue' is not valid for backend"):
            task.enqueue()
        with pytest.raises(InvalidTask, match="Queue 'unknown_queue' is not valid for backend"):
            async_to_sync(task.aenqueue)()


def test_run_after(broker: Broker) -> None:
    """Upstream's immediate backend refuses ``run_after``; this one waits for it."""
    due = timezone.now() + timedelta(seconds=1)
    result = contract.calculate_meaning_of_life.using(run_after=due).enqueue()
    assert contract.calculate_meaning_of_life.get_result(result.id).status == "READY"
    result = finished(result)
    assert result.return_value == 42 and result.started_at >= due
    assert result.task.run_after == due


# --- DummyBackendTestCase (test_dummy_backend.py): what a get_result backend does -------


@pytest.mark.parametrize("task", [contract.noop_task, contract.noop_task_async])
def test_dummy_enqueue_task(parked: str, task: Any) -> None:
    result = task.using(queue_name=parked).enqueue(1, two=3)
    assert result.status == TaskResultStatus.READY
    assert result.is_finished is False
    assert (result.started_at, result.last_attempted_at, result.finished_at) == (None,) * 3
    with pytest.raises(ValueError, match="Task has not finished yet"):
        _ = result.return_value
    assert result.task == task.using(queue_name=parked)
    assert (result.args, result.kwargs, result.attempts) == ([1], {"two": 3}, 0)
    assert result.errors == []  # upstream's test_errors


def test_dummy_refresh_result(broker: Broker) -> None:
    result = contract.calculate_meaning_of_life.enqueue()
    assert result.status == TaskResultStatus.READY
    assert finished(result).status == TaskResultStatus.SUCCESSFUL


def test_dummy_refresh_result_async(broker: Broker) -> None:
    result = contract.calculate_meaning_of_life.enqueue()
    deadline = time.monotonic() + TIMEOUT
    while not result.is_finished:
        assert time.monotonic() < deadline
        time.sleep(0.05)
        async_to_sync(result.arefresh)()
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_dummy_check() -> None:
    assert task_backends["default"].check() == []


def test_dummy_takes_context(parked: str) -> None:
    result = contract.get_task_id.using(queue_name=parked).enqueue()
    assert result.status == TaskResultStatus.READY


# --- Beyond upstream: the contract points ---------------------------------------


def signals_of(token: str, count: int) -> list[dict[str, Any]]:
    """The signal lines :mod:`~tests.apps.single.contract` wrote for ``token``, once
    there are ``count``."""
    path = contract.signal_file(token)
    deadline = time.monotonic() + TIMEOUT
    while True:
        text = path.read_text() if path.exists() else ""
        lines = text.splitlines()
        if len(lines) >= count and text.endswith("\n"):  # the last line written whole
            path.unlink()
            return [json.loads(line) for line in lines]
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("raising", "status", "errors"),
    [
        ("", "SUCCESSFUL", []),
        ("ValueError", "FAILED", ["builtins.ValueError"]),
        ("SystemExit", "FAILED", ["builtins.SystemExit"]),
    ],
)
def test_signals_on_the_worker(
    broker: Broker, raising: str, status: str, errors: list[str]
) -> None:
    """``task_enqueued`` here, ``task_started`` and ``task_finished`` on the worker, each
    from the backend's class; a failure's class path imports there (``builtins.…``)."""
    token = uuid.uuid4().hex
    result = finished(contract.signalled.enqueue(token, raising=raising))
    # task_enqueued is sent here once the message is out, so the worker's may come first
    lines = sorted(signals_of(token, 3), key=lambda line: line["signal"] != "task_enqueued")
    assert [line["signal"] for line in lines] == ["task_enqueued", "task_started", "task_finished"]
    assert {line["sender"] for line in lines} == {"taskkit.backends.celery.CeleryBackend"}
    assert {line["id"] for line in lines} == {result.id}
    assert [line["status"] for line in lines] == ["READY", "RUNNING", status]
    assert lines[-1]["errors"] == errors
    assert lines[-1]["classes"] == [path.rpartition(".")[2] for path in errors]
    if raising:
        assert lines[-1]["traceback"][0].endswith(f"{raising}: {token}\n")
    assert [e.exception_class_path for e in result.errors] == errors


def test_a_task_declared_on_another_backend_runs_through_using(broker: Broker) -> None:
    """``.using(backend=…)`` naming a CeleryBackend sends a task declared on the dummy one."""
    task = contract.declared_on_dummy.using(backend="default")
    result = finished(task.enqueue(6, 7))
    assert result.return_value == 42
    assert result.task == task and result.backend == "default"
    assert task.get_result(result.id) == result


def test_a_prefork_pool_process_outlives_a_task_that_exits(broker: Broker) -> None:
    """``SystemExit``, ``exit()`` and ``KeyboardInterrupt`` raised by a task fail its run; the
    one pool process goes on to the next run, and the worker still stops on SIGTERM."""
    process = start_worker(broker, "prefork", ("djc-prefork",), pool="prefork")
    try:
        on: dict[str, Any] = {"queue_name": "djc-prefork"}
        first = finished(contract.process_id.using(**on).enqueue()).return_value
        for task, path in (
            (contract.failing_task_system_exit, "builtins.SystemExit"),
            (contract.exit_task, "builtins.SystemExit"),
            (contract.failing_task_keyboard_interrupt, "builtins.KeyboardInterrupt"),
        ):
            result = finished(task.using(**on).enqueue())
            assert result.status == TaskResultStatus.FAILED
            assert [e.exception_class_path for e in result.errors] == [path]
        assert finished(contract.process_id.using(**on).enqueue()).return_value == first
        process.send_signal(signal.SIGTERM)  # the main process only: a warm shutdown
        assert process.wait(TIMEOUT) == 0
    finally:
        stop(process)


MANAGE = (
    "import sys, tests.celery_app; from django.core.management import execute_from_command_line; "
    "execute_from_command_line(['manage.py', *sys.argv[1:]])"
)


def test_a_star_worker_consumes_the_queues_tasks_names(broker: Broker) -> None:
    """``taskworker --queues '*'`` consumes ``TASKS["celery"]["QUEUES"]``'s ``djc-star``, a
    queue named nowhere else (no run has gone there: it is no known queue yet)."""
    assert not KnownQueue.objects.filter(name="djc-star").exists()
    command = [
        sys.executable, "-c", MANAGE, "taskworker", "--queues", "*",
        "--pool", "threads", "--concurrency", "1", "--loglevel", "warning",
    ]  # fmt: skip
    env = worker_env(broker)
    process = subprocess.Popen(command, cwd=REPO, env=env, text=True, start_new_session=True)
    try:
        task = contract.calculate_meaning_of_life.using(backend="celery", queue_name="djc-star")
        result = finished(task.enqueue())
        assert result.return_value == 42
        assert result.task.queue_name == "djc-star"
    finally:
        stop(process)
        queues.purge("djc-star")
