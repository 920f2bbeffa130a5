"""The management commands: runtask, listtasks and newtask, success and failure paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.apps import AppConfig, apps
from django.core.management import CommandError, call_command
from django.utils import timezone

import taskkit
from taskkit.registry import TaskRegistry


def call(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- runtask ---------------------------------------------------------------------------


def test_runtask_prints_json_result() -> None:
    assert json.loads(call("runtask", "echo:payload", "--payload", '{"a": 1}', "--json")) == {
        "a": 1
    }


def test_runtask_prints_plain_results() -> None:
    assert call("runtask", "plain:hello", "--payload", '{"name": "Ada"}') == "hello Ada\n"
    assert json.loads(call("runtask", "db:migrate")) == {"migrated": True, "payload": {}}
    assert call("runtask", "echo:shout", "--json", "--payload", '{"text": "a"}') == '"A!"\n'


def test_runtask_prints_nothing_for_none(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = taskkit.task(name="quiet:none")(lambda event: None)
    monkeypatch.setitem(taskkit.registry.current().tasks, "quiet:none", quiet)
    assert call("runtask", "quiet:none") == ""
    assert call("runtask", "quiet:none", "--json") == "null\n"


def test_runtask_runs_as_cli_source(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = taskkit.task(name="spy:source")(lambda event: str(event.context.source))
    monkeypatch.setitem(taskkit.registry.current().tasks, "spy:source", spy)
    assert call("runtask", "spy:source") == "cli\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["echo:payload", "--payload", "{bad"], "payload is not valid JSON"),
        (["echo:payload", "--payload", "[1, 2]"], "payload must be a JSON object, not list"),
        (["echo:paylod"], "Unknown task 'echo:paylod'. Did you mean: echo:payload"),
    ],
)
def test_runtask_usage_errors_exit_2(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message) as caught:
        call("runtask", *args)
    assert caught.value.returncode == 2


def test_runtask_schema_error_exits_2_without_running(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[int] = []
    strict = taskkit.task(name="strict:schema", schema={"n": int})(lambda event: ran.append(1))
    monkeypatch.setitem(taskkit.registry.current().tasks, "strict:schema", strict)
    with pytest.raises(CommandError, match="'n' must be int") as caught:
        call("runtask", "strict:schema", "--payload", '{"n": "x"}')
    assert caught.value.returncode == 2 and ran == []


def test_runtask_failure_exits_1_with_the_error() -> None:
    with pytest.raises(
        CommandError, match="Task 'echo:fail' failed: EchoError: failed with"
    ) as caught:
        call("runtask", "echo:fail")
    assert caught.value.returncode == 1


def test_runtask_invalid_payload_raised_by_the_task_is_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def run(event: Any) -> None:
        raise taskkit.InvalidPayload("raised inside the task")

    inner = taskkit.task(name="inner:invalid")(run)
    monkeypatch.setitem(taskkit.registry.current().tasks, "inner:invalid", inner)
    with pytest.raises(CommandError, match="raised inside the task") as caught:
        call("runtask", "inner:invalid")
    assert caught.value.returncode == 1


def test_runtask_traceback_reraises_the_task_error() -> None:
    from tests.apps.nested.tasks.echo.fail import EchoError

    with pytest.raises(EchoError):
        call_command("runtask", "echo:fail", traceback=True, stdout=StringIO())


def test_runtask_not_implemented_exits_1(reload_registry: Callable[..., TaskRegistry]) -> None:
    reload_registry("tests.apps.nested", TASKKIT={"TASKS": {"gone:away": {"handler": "x.y.z"}}})
    with pytest.raises(CommandError, match="Task 'gone:away' has no handler") as caught:
        call("runtask", "gone:away")
    assert caught.value.returncode == 1


# --- listtasks -------------------------------------------------------------------------


def test_listtasks_json_lists_every_task() -> None:
    from tests.apps.single import jobs  # a django.tasks module, imported: listed too

    rows = json.loads(call("listtasks", "--json"))
    assert [r["name"] for r in rows] == list(taskkit.all_tasks())
    assert jobs.add.module_path in [r["name"] for r in rows]
    migrate = next(r for r in rows if r["name"] == "db:migrate")
    assert migrate == {
        "name": "db:migrate",
        "description": "Pretend to migrate",
        "queue": "maintenance",
        "schedule": None,
        "cron": None,
        "frequency": None,
        "module": "tests.apps.nested.tasks.db.migrate",
        "implemented": True,
    }


def test_listtasks_table() -> None:
    lines = call("listtasks").splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION", "QUEUE", "SCHEDULE", "MODULE"]
    row = next(line for line in lines if line.startswith("db:migrate "))
    assert "Pretend to migrate" in row and "maintenance" in row


def test_listtasks_shows_schedules(reload_registry: Callable[..., TaskRegistry]) -> None:
    reload_registry(
        "tests.apps.nested",
        TASKKIT={
            "TASKS": {
                "every:minute": {"handler": "tests.apps.nested.handlers.hello", "frequency": 60},
                "on:cron": {"handler": "tests.apps.nested.handlers.hello", "cron": "@daily"},
            }
        },
    )
    rows = {r["name"]: r for r in json.loads(call("listtasks", "--json"))}
    assert rows["every:minute"]["schedule"] == "Every minute"
    assert rows["on:cron"]["schedule"] == "At 00:00"
    assert rows["on:cron"]["cron"] == "0 0 * * *"


def test_listtasks_empty(
    reload_registry: Callable[..., TaskRegistry], monkeypatch: pytest.MonkeyPatch
) -> None:
    reload_registry("django.contrib.auth", TASKKIT={})
    monkeypatch.setattr("taskkit.backends.celery._defined", set())  # no django.tasks either
    assert call("listtasks") == "No tasks registered.\n"
    assert json.loads(call("listtasks", "--json")) == []


# --- newtask ---------------------------------------------------------------------------


@pytest.fixture
def scratch_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppConfig:
    """An app package in a temporary folder, returned by ``apps.get_app_config('scratch')``."""
    for name in [m for m in sys.modules if m == "scratch" or m.startswith("scratch.")]:
        monkeypatch.delitem(sys.modules, name)
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "__init__.py").touch()
    monkeypatch.syspath_prepend(str(tmp_path))
    config = AppConfig.create("scratch")
    original = apps.get_app_config
    monkeypatch.setattr(
        apps, "get_app_config", lambda label: config if label == "scratch" else original(label)
    )
    return config


def test_newtask_writes_a_working_task(
    scratch_app: AppConfig, reload_registry: Callable[..., TaskRegistry]
) -> None:
    description = 'Remove "old" rows \\ and more\nlines'
    output = call("newtask", "db:clean_up", "--app", "scratch", "--description", description)
    target = Path(scratch_app.path) / "tasks" / "db" / "clean_up.py"
    assert f"Created {target}" in output
    assert (target.parent / "__init__.py").exists() and (
        target.parent.parent / "__init__.py"
    ).exists()
    found = reload_registry("scratch", TASKKIT={})
    assert list(found.tasks) == ["db:clean_up"]
    assert found.get("db:clean_up").description == description
    assert taskkit.run_task("db:clean_up") == {"ok": True}


def test_newtask_refuses_to_overwrite(scratch_app: AppConfig) -> None:
    call("newtask", "report", "--app", "scratch")
    target = Path(scratch_app.path) / "tasks" / "report.py"
    target.write_text("# mine\n")
    with pytest.raises(CommandError, match="exists already; not overwriting"):
        call("newtask", "report", "--app", "scratch")
    assert target.read_text() == "# mine\n"


def test_newtask_refuses_an_app_with_a_tasks_module(scratch_app: AppConfig) -> None:
    (Path(scratch_app.path) / "tasks.py").write_text("")
    with pytest.raises(CommandError, match="turn it into a package"):
        call("newtask", "x", "--app", "scratch")


@pytest.mark.parametrize("name", ["db:", "db:clean-up", "class:x", "a b", "ünï"])
def test_newtask_refuses_bad_names(scratch_app: AppConfig, name: str) -> None:
    with pytest.raises(CommandError, match="not a valid module name"):
        call("newtask", name, "--app", "scratch")
    assert not (Path(scratch_app.path) / "tasks").exists()


def test_newtask_unknown_app() -> None:
    with pytest.raises(CommandError, match="No installed app with label 'nope'"):
        call("newtask", "x", "--app", "nope")


def test_newtask_needs_an_app(capsys: Any) -> None:
    with pytest.raises(CommandError, match="--app"):
        call("newtask", "x")


# --- runtask, queueing ---------------------------------------------------------------


@pytest.mark.django_db
def test_runtask_enqueue_prints_the_run_id(taskkit_enqueues: Any) -> None:
    run_id = call("runtask", "echo:payload", "--payload", '{"a": 1}', "--enqueue").strip()
    [run] = taskkit_enqueues.assert_enqueued("echo:payload", {"a": 1})
    assert run.id == run_id and run.queue == "default" and run.run_after is None


@pytest.mark.django_db
def test_runtask_queue_in_and_at(taskkit_enqueues: Any, settings: Any) -> None:
    out = json.loads(call("runtask", "db:migrate", "--queue", "urgent", "--json"))
    assert out["queue"] == "urgent" and out["deduplicated"] is False
    call("runtask", "db:migrate", "--in", "90")
    call("runtask", "db:migrate", "--at", "2031-02-03T04:05:06+00:00")
    settings.TIME_ZONE = "Europe/Paris"
    call("runtask", "db:migrate", "--at", "2031-07-01T12:00")
    urgent, later, at, local = taskkit_enqueues.named("db:migrate")
    assert urgent.queue == "urgent" and urgent.id == out["id"]
    assert later.run_after is not None
    assert 85 < (later.run_after - timezone.now()).total_seconds() <= 90
    assert at.run_after == datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert local.run_after == datetime(2031, 7, 1, 10, 0, tzinfo=UTC)  # read in TIME_ZONE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--in", "-5"], "--in needs a delay of 0 seconds or more"),
        (["--at", "tomorrow"], "--at 'tomorrow' is not an ISO 8601 time"),
        (["--queue", " "], "is not a valid queue name"),
        (["--queue", ""], "a queue name has 1 to 200 characters"),
        (["--in", "inf"], "delay from 0 to 3650 days"),
    ],
)
@pytest.mark.django_db
def test_runtask_bad_queueing_options_exit_2(
    taskkit_enqueues: Any, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message) as caught:
        call("runtask", "echo:payload", *args)
    assert caught.value.returncode == 2
    assert taskkit_enqueues.runs == []


def test_runtask_in_and_at_exclude_each_other() -> None:
    with pytest.raises(CommandError, match="not allowed with argument"):
        call("runtask", "echo:payload", "--in", "1", "--at", "2031-01-01T00:00")


@pytest.mark.django_db(transaction=True)  # messages leave on commit
def test_runtask_unreachable_broker_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise taskkit.BrokerUnavailable("the broker is unreachable (test)")

    monkeypatch.setattr(sys.modules["taskkit.bridge.send.enqueue"], "publish", down)
    with pytest.raises(CommandError, match="unreachable") as caught:
        call("runtask", "echo:payload", "--enqueue")
    assert caught.value.returncode == 1


# --- taskworker ------------------------------------------------------------------------


@pytest.mark.django_db
def test_taskworker_star_consumes_every_known_queue() -> None:
    taskkit.enqueue_in("echo:payload", 3600, queue="overridden")
    line = call("taskworker", "--dry-run", "--beat", "-c", "3", "-P", "threads")
    queues = line.split("--queues ")[1].split()[0].split(",")
    assert {"default", "maintenance", "loud", "plain", "overridden"} <= set(queues)
    assert "--concurrency 3" in line and "--pool threads" in line
    assert "--beat --scheduler taskkit.scheduler:Scheduler" in line


def test_taskworker_named_queues() -> None:
    line = call("taskworker", "--dry-run", "--queues", "a,b")
    assert line.strip() == (
        f"celery worker --queues a,b --loglevel info --hostname taskkit-{os.getpid()}@%h"
    )


def test_taskworker_sends_task_events_and_passes_further_celery_options_on() -> None:
    line = call(
        "taskworker",
        "--dry-run",
        "-Q",
        "a",
        "-E",
        "--",
        "--max-tasks-per-child",
        "100",
        "-O",
        "fair",
    )
    assert line.strip().endswith("--task-events --max-tasks-per-child 100 -O fair")
    assert "--task-events" not in call("taskworker", "--dry-run", "-Q", "a")


def test_each_taskworker_process_has_a_node_name_of_its_own() -> None:
    """Two workers on one host once shared ``celery@host``: one heartbeat, one pidbox."""
    command = [sys.executable, "-m", "django", "taskworker", "--dry-run", "--queues", "a"]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    lines = {
        subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    names = {line.split("--hostname ")[1].strip().strip("'") for line in lines}
    assert len(names) == 2 and all(n.startswith("taskkit-") and n.endswith("@%h") for n in names)
    named = call("taskworker", "--dry-run", "--queues", "a", "-n", "reports@%h")
    assert "--hostname reports@%h" in named


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--queues", "a,,b"], "a queue name has 1 to 200 characters"),
        (["--queues", "celeryev"], "keeps for itself"),
        (["--queues", "a", "-c", "0"], "at least 1"),
    ],
)
def test_taskworker_bad_options(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call("taskworker", "--dry-run", *args)


@pytest.mark.parametrize("payload", ["{not json", "[1]", '"text"'])
def test_a_bad_payload_is_a_usage_error_before_any_question(
    payload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def answer(question: str) -> str:
        asked.append(question)
        return "yes"

    monkeypatch.setattr("builtins.input", answer)
    with pytest.raises(CommandError) as caught:
        call("taskqueue", "del", "default", "echo:payload", "--payload", payload)
    assert caught.value.returncode == 2 and asked == []
