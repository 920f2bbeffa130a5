"""The run table's indexes: each one earns what it costs every row written."""

from __future__ import annotations

import pytest
from django.db import connection

from taskkit.models import TaskRun

pytestmark = pytest.mark.django_db


def _indexes() -> dict[str, list[str]]:
    """The run table's indexes as the database has them (not its key): name, columns."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, TaskRun._meta.db_table)
    return {
        name: list(about["columns"])
        for name, about in found.items()
        if about["index"] and not about["primary_key"] and not about["unique"]
    }


def test_no_index_of_the_run_table_is_the_start_of_another() -> None:
    """An index whose columns lead another serves no lookup the other does not, and
    every row a worker writes pays for it (PostgreSQL adds a ``LIKE`` index per text column)."""
    indexes = _indexes()
    redundant = [
        (name, other)
        for name, columns in indexes.items()
        for other, longer in indexes.items()
        if name != other and len(columns) <= len(longer) and longer[: len(columns)] == columns
    ]
    assert redundant == []


def test_lookups_by_name_or_status_alone_still_lead_an_index() -> None:
    leading = {columns[0] for columns in _indexes().values()}
    assert {"name", "status"} <= leading
