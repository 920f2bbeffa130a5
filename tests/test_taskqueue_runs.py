"""taskqueue over the run table: failed, retry-failed, remove-failed, prune (no broker needed)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from taskkit import queues
from taskkit.management.commands.taskqueue import parse_duration
from taskkit.models import RunStatus, TaskRun
from taskkit.queues.history import history

pytestmark = pytest.mark.django_db(transaction=True)


def taskqueue(*args: str) -> Any:
    out = StringIO()
    call_command("taskqueue", *args, stdout=out)
    return json.loads(out.getvalue()) if "--json" in args else out.getvalue().strip()


def run(status: RunStatus, age: timedelta = timedelta(0), **fields: Any) -> TaskRun:
    fields.setdefault("name", "echo:payload")
    return TaskRun.objects.create(
        id=uuid.uuid4(), status=status, finished_at=timezone.now() - age, **fields
    )


def test_failed_lists_the_latest_first() -> None:
    old = run(RunStatus.FAILED, timedelta(hours=2), error="Boom: old\\nmore")
    new = run(RunStatus.FAILED, error="Boom: new")
    run(RunStatus.SUCCEEDED)
    listed = taskqueue("failed", "--json")
    assert [r["id"] for r in listed] == [str(new.pk), str(old.pk)]
    assert "Boom: new" in taskqueue("failed")
    assert [r.pk for r in queues.failed(limit=1)] == [new.pk]
    assert taskqueue("failed", "--name", "db:migrate") == "No failed runs."


def test_retry_and_remove_failed() -> None:
    first = run(RunStatus.FAILED, payload={"a": 1})
    second = run(RunStatus.FAILED, payload={"a": 2})
    assert taskqueue("retry-failed", str(first.pk), "--json") == [str(first.pk)]
    first.refresh_from_db()
    assert first.status == RunStatus.QUEUED and first.payload == {"a": 1}
    assert taskqueue("remove-failed", "--name", "echo:payload", "--dry-run") == (
        "Would remove 1 failed run(s)."
    )
    assert taskqueue("remove-failed", "--name", "echo:payload", "--noinput") == (
        "Removed 1 failed run(s)."
    )
    assert not TaskRun.objects.filter(pk=second.pk).exists()
    with pytest.raises(CommandError, match="run id or a task name") as caught:
        taskqueue("remove-failed", "--noinput")
    assert caught.value.returncode == 2


def test_prune_deletes_finished_runs_older_than_the_duration() -> None:
    kept = [run(RunStatus.SUCCEEDED, timedelta(hours=1)), run(RunStatus.RUNNING, timedelta(days=9))]
    for status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
        run(status, timedelta(days=8))
    assert taskqueue("prune", "--older-than", "7d", "--dry-run", "--json") == {
        "removed": 3,
        "dry_run": True,
    }
    assert TaskRun.objects.count() == 5
    assert taskqueue("prune", "--older-than", "7d", "--noinput") == "Removed 3 finished run(s)."
    assert {r.pk for r in TaskRun.objects.all()} == {r.pk for r in kept}
    with pytest.raises(CommandError, match="not a duration") as caught:
        taskqueue("prune", "--older-than", "soon", "--noinput")
    assert caught.value.returncode == 2
    with pytest.raises(CommandError, match="longer than a duration may be") as caught:
        taskqueue("prune", "--older-than", "99999999999d", "--noinput")
    assert caught.value.returncode == 2
    assert queues.prune(timedelta.max) == 0  # before year 1: nothing is that old


def test_durations() -> None:
    assert parse_duration("90") == parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration("7d") == timedelta(days=7)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("7 weeks")


def test_names_and_queues_no_database_stores_find_nothing() -> None:
    """NUL (a script's bytes) in a name or queue: no run has it, and PostgreSQL is not asked."""
    run(RunStatus.FAILED, name="echo:payload")
    assert queues.failed("echo:\x00") == []
    assert sum(b.failed for b in history(task="echo:\x00", queue="q\x00")) == 0
    assert taskqueue("failed", "--name", "echo:\x00", "--json") == []
