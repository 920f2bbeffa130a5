"""Data migrations: what they carry over from the rows they find."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("back_to_latest")]


@pytest.fixture
def back_to_latest() -> Iterator[None]:
    """Leave the database migrated to the latest migrations, as the tests after these expect."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def migrate(target: str) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate([("taskkit", target)])
    executor.loader.build_graph()
    return executor


def test_the_queues_of_stored_runs_become_known_queues() -> None:
    old = (
        migrate("0004_dashboard_permissions")
        .loader.project_state(("taskkit", "0004_dashboard_permissions"))
        .apps
    )
    old.get_model("taskkit", "TaskRun").objects.create(
        name="echo:payload", queue="from-a-run", status="failed"
    )
    old.get_model("taskkit", "KnownQueue").objects.create(name="already")
    new = (
        migrate("0005_known_queues_of_stored_runs")
        .loader.project_state(("taskkit", "0005_known_queues_of_stored_runs"))
        .apps
    )
    names = set(new.get_model("taskkit", "KnownQueue").objects.values_list("name", flat=True))
    assert names == {"from-a-run", "already"}


def test_heartbeats_kept_from_before_read_as_an_older_worker_s() -> None:
    """Rows from before 0009, and rows an older worker inserts after it, get the defaults."""
    old = migrate("0008_workerheartbeat_process")
    old_apps = old.loader.project_state(("taskkit", "0008_workerheartbeat_process")).apps
    moment = timezone.now()
    old_apps.get_model("taskkit", "WorkerHeartbeat").objects.create(
        name="before@host", started_at=moment, seen_at=moment, process="box:7:ab"
    )
    new = migrate("0009_workerheartbeat_worker_list")
    new_apps = new.loader.project_state(("taskkit", "0009_workerheartbeat_worker_list")).apps
    with connection.cursor() as cursor:  # an older worker's insert names only what it knows
        cursor.execute(
            "INSERT INTO taskkit_workerheartbeat (name, started_at, seen_at, process) "
            "VALUES (%s, %s, %s, %s)",
            ["older@host", moment, moment, "box:8:cd"],
        )
    rows = new_apps.get_model("taskkit", "WorkerHeartbeat").objects.order_by("name")
    assert list(rows.values_list("name", "queues", "concurrency", "pool", "active", "lost_at")) == [
        ("before@host", [], 0, "", 0, None),
        ("older@host", [], 0, "", 0, None),
    ]
