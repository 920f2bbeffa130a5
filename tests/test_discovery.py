"""Discovery of tasks modules, the settings registry, and the checks that report problems."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import pytest
from celery import current_app
from django.core.checks import run_checks

import taskkit
from taskkit import TaskNotFound
from taskkit.backends.celery import defined_paths
from taskkit.registry import TaskRegistry

Reload = Callable[..., TaskRegistry]


def messages(*ids: str) -> list[Any]:
    return [m for m in run_checks(tags=["taskkit"]) if m.id in ids]


def test_nested_packages_are_named_by_path() -> None:
    tasks = taskkit.all_tasks()
    assert tasks["db:migrate"].module == "tests.apps.nested.tasks.db.migrate"
    assert tasks["db:migrate"].queue == "maintenance"
    assert tasks["aio:sleep"].is_async
    assert tasks["echo:payload"].description == "Returns the provided payload."


def test_tasks_of_every_kind_of_module_are_found_in_name_order() -> None:
    names = list(taskkit.all_tasks())
    assert names == sorted(names)
    assert {
        "aio:sleep",  # nested package
        "db:migrate",
        "echo:first",  # two named tasks in one module
        "echo:second",
        "echo:shout",  # settings entry over a discovered task
        "plain:hello",  # settings entry only
        "single:named",  # single tasks.py module
        "single_ping",
    } <= set(names)
    # no stray module-path names: only django.tasks functions are named by their path
    assert {n for n in names if n.startswith("tests.")} <= set(defined_paths())


def test_a_module_may_define_several_named_tasks() -> None:
    assert taskkit.get_task("echo:first").module == taskkit.get_task("echo:second").module
    assert taskkit.run_task("echo:second") == "second"


def test_single_tasks_py_module() -> None:
    assert taskkit.get_task("single_ping").module == "tests.apps.single.tasks"
    assert taskkit.run_task("single:named") == "named"


def test_settings_entry_wins_over_discovered_task() -> None:
    shout = taskkit.get_task("echo:shout")
    assert shout.module == "tests.apps.nested.handlers"
    assert shout.queue == "loud"
    assert taskkit.run_task("echo:shout", {"text": "hi"}) == "HI!"


def test_settings_entry_with_plain_function() -> None:
    hello = taskkit.get_task("plain:hello")
    assert hello.queue == "plain"
    assert hello.description == "Say hello (a plain function registered in settings)."
    assert taskkit.run_task("plain:hello", {"name": "Ada"}) == "hello Ada"


def test_shared_task_in_a_tasks_module_keeps_working() -> None:
    legacy = current_app.tasks["tests.legacy_add"]
    assert legacy.apply(args=(2, 3)).get() == 5
    assert "tests.legacy_add" not in taskkit.all_tasks()


def test_get_task_suggests_close_names() -> None:
    with pytest.raises(TaskNotFound) as caught:
        taskkit.get_task("echo:paylaod")
    assert caught.value.suggestions[0] == "echo:payload"
    assert caught.value.status_code == 404
    assert "Did you mean: echo:payload" in str(caught.value)
    with pytest.raises(TaskNotFound, match=r"^Unknown task 'zzz'\.$"):
        taskkit.get_task("zzz")


def test_a_name_no_task_can_have_gets_no_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    """difflib's cost grows with the name: 10,000 characters are refused without it."""
    compared: list[str] = []
    monkeypatch.setattr(difflib, "get_close_matches", lambda word, *a, **k: compared.append(word))
    with pytest.raises(TaskNotFound) as caught:
        taskkit.get_task("echo:payload" + "x" * 10_000)
    assert caught.value.suggestions == () and compared == []


def test_no_problems_in_the_test_project() -> None:
    assert run_checks(tags=["taskkit"]) == []


def test_duplicate_names_are_a_check_error_naming_both_files(reload_registry: Reload) -> None:
    found = reload_registry("tests.apps.dupes_a", "tests.apps.dupes_b")
    assert (
        found.get("clash").module == "tests.apps.dupes_a.tasks.clash"
    )  # first app wins the lookup
    [error] = messages("taskkit.E002")
    assert "'clash' is defined more than once" in error.msg
    assert "tests/apps/dupes_a/tasks/clash.py" in error.msg
    assert "tests/apps/dupes_b/tasks/clash.py" in error.msg


def test_unnamed_tasks_sharing_a_module_are_a_check_error(reload_registry: Reload) -> None:
    reload_registry("tests.apps.unnamed")
    [error] = messages("taskkit.E004")
    assert "defines 2 tasks named 'two'" in error.msg
    assert "tests/apps/unnamed/tasks/two.py" in error.msg
    assert messages("taskkit.E002") == []


def test_import_errors_are_reported_with_the_module_path(reload_registry: Reload) -> None:
    found = reload_registry("tests.apps.broken")
    assert "fine" in found  # the good module next to it is still discovered
    [error] = messages("taskkit.E003")
    assert "'tests.apps.broken.tasks.bad'" in error.msg
    assert "tests/apps/broken/tasks/bad.py" in error.msg
    assert "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'" in error.msg
    assert found.import_problems[0].traceback.startswith("Traceback")


def test_custom_tasks_module_name(reload_registry: Reload) -> None:
    found = reload_registry(
        "tests.apps.custom", "tests.apps.nested", TASKKIT={"TASKS_MODULE": "jobs"}
    )
    assert list(found.tasks) == ["nightly:backup"]
    assert taskkit.run_task("nightly:backup") == "backed up"


def test_apps_without_tasks_are_fine(reload_registry: Reload) -> None:
    assert len(reload_registry("django.contrib.auth", "django.contrib.sessions", TASKKIT={})) == 0


def test_settings_handler_whose_module_raises_is_not_implemented(reload_registry: Reload) -> None:
    found = reload_registry(
        "tests.apps.nested",
        TASKKIT={"TASKS": {"boom:now": {"handler": "tests.apps.broken.tasks.bad.run"}}},
    )
    assert found.get("boom:now").handler is None
    assert "ModuleNotFoundError" in found.get("boom:now").missing_reason


def test_unimportable_settings_handler_is_a_warning_and_not_implemented(
    reload_registry: Reload,
) -> None:
    found = reload_registry(
        "tests.apps.nested",
        TASKKIT={"TASKS": {"db:migrate": {"handler": "tests.nowhere.run", "description": "Gone"}}},
    )
    migrate = found.get("db:migrate")
    assert migrate.handler is None and migrate.description == "Gone"
    [warning] = messages("taskkit.W001")
    assert "'db:migrate'" in warning.msg and "tests.nowhere.run" in warning.msg
    with pytest.raises(taskkit.TaskNotImplemented) as caught:
        taskkit.run_task("db:migrate")
    assert caught.value.status_code == 501


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("tests.apps.nested.handlers.hello", "must be a dict"),
        ({}, "needs a 'handler' dotted path"),
        ({"handler": "tests.apps.nested.handlers.hello", "queue": ""}, "a queue name has"),
        ({"handler": "tests.settings.SECRET_KEY"}, "handler must be callable"),
        ({"handler": "tests.nowhere.run", "cron": "bad"}, "cron needs 5"),
        ({"handler": "tests.apps.nested.handlers.hello", "name": "x"}, "the key is the name"),
    ],
)
def test_malformed_settings_entries(reload_registry: Reload, entry: Any, message: str) -> None:
    found = reload_registry("tests.apps.nested", TASKKIT={"TASKS": {"bad:entry": entry}})
    assert "bad:entry" not in found
    [error] = messages("taskkit.E005")
    assert message in error.msg


@pytest.mark.parametrize(
    ("value", "check_id", "message"),
    [
        ([], "E001", "settings.TASKKIT must be a dict"),
        ({"TASK": {}}, "E001", "unknown key 'TASK'"),
        ({"TASKS_MODULE": "my-tasks"}, "E010", "TASKS_MODULE"),
        ({"TASKS": []}, "E011", "TASKKIT['TASKS'] must be a dict"),
        ({"MAX_PAYLOAD_BYTES": 0}, "E012", "MAX_PAYLOAD_BYTES"),
        ({"MAX_PAYLOAD_BYTES": "1"}, "E012", "MAX_PAYLOAD_BYTES"),
        ({"TRACK": "everything"}, "E013", "TRACK"),
        ({"OUTBOX_AFTER": 0}, "E014", "OUTBOX_AFTER"),
        ({"OUTBOX_AFTER": float("nan")}, "E014", "OUTBOX_AFTER"),
        ({"WORKER_LOST_AFTER": -1}, "E015", "WORKER_LOST_AFTER"),
        ({"LOCK_CACHE": "nowhere"}, "E016", "names no cache in CACHES: 'nowhere'"),
        ({"API_TOKEN": "short"}, "E017", "API_TOKEN'] must be a string of at least 32"),
        ({"API_TOKEN": 12345}, "E017", "API_TOKEN'] must be a string"),
        ({"RABBITMQ_MANAGEMENT_URL": "ftp://h"}, "E018", "RABBITMQ_MANAGEMENT_URL"),
    ],
)
def test_malformed_settings(
    reload_registry: Reload, value: Any, check_id: str, message: str
) -> None:
    """Each setting has its own id: exactly that one is reported, so it can be silenced alone."""
    reload_registry("tests.apps.nested", TASKKIT=value)
    errors = [m for m in run_checks(tags=["taskkit"]) if m.is_serious()]
    assert [e.id for e in errors] == [f"taskkit.{check_id}"], errors
    assert message in errors[0].msg


def test_one_setting_silenced_leaves_the_others(reload_registry: Reload, settings: Any) -> None:
    settings.SILENCED_SYSTEM_CHECKS = ["taskkit.E013"]
    reload_registry("tests.apps.nested", TASKKIT={"TRACK": "everything", "OUTBOX_AFTER": 0})
    ids = [m.id for m in run_checks(tags=["taskkit"]) if m.is_serious() and not m.is_silenced()]
    assert ids == ["taskkit.E014"]
