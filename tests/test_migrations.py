"""Data migrations: what they carry over from the rows they find."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

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
