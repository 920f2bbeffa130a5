"""``TaskRun.objects`` names the run states once; each picks exactly its rows."""

from __future__ import annotations

import pytest

from taskkit.models import FINISHED, RunStatus, TaskRun

pytestmark = pytest.mark.django_db


def test_each_state_picks_exactly_its_rows() -> None:
    rows = {
        status: TaskRun.objects.create(name="echo:payload", status=status) for status in RunStatus
    }
    runs = TaskRun.objects
    picked = {
        "scheduled": runs.scheduled(),
        "queued": runs.queued(),
        "running": runs.running(),
        "succeeded": runs.succeeded(),
        "failed": runs.failed(),
        "cancelled": runs.cancelled(),
    }
    for status, queryset in picked.items():
        assert list(queryset) == [rows[RunStatus(status)]]
    assert set(runs.finished()) == {rows[status] for status in FINISHED}
    assert set(runs.delayed_or_running()) == {rows[RunStatus.SCHEDULED], rows[RunStatus.RUNNING]}


def test_states_chain_with_other_filters() -> None:
    TaskRun.objects.create(name="a", status=RunStatus.FAILED)
    TaskRun.objects.create(name="b", status=RunStatus.FAILED)
    TaskRun.objects.create(name="a", status=RunStatus.SUCCEEDED)
    assert TaskRun.objects.failed().filter(name="a").count() == 1
    assert TaskRun.objects.filter(name="a").failed().count() == 1
