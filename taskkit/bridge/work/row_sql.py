"""The SQL of run rows, built once per field set: multi-row upserts and a conditional update.

Django's query compiler costs a worker more CPU than SQLite spends on these
statements, and they are sent for every run: the recorder's batches, the claim
of a stored run, and the rows ``track="all"`` writes at once. Other databases
take the ORM's way.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field

from ...models import TaskRun

Fields = dict[str, Any]


def upsert_many(rows: Iterable[tuple[str, Fields]]) -> None:
    """Write rows in as few statements as their field sets allow (``INSERT … ON CONFLICT``)."""
    groups: dict[tuple[str, ...], list[tuple[str, Fields]]] = {}
    for run_id, fields in rows:
        groups.setdefault(tuple(fields), []).append((run_id, fields))
    db = connections[router.db_for_write(TaskRun)]  # the wrapper itself, not the proxy
    for names, group in groups.items():
        if db.vendor in ("sqlite", "postgresql"):
            _execute_upsert(db, names, group)
        else:  # Django builds the statement for other databases (slower: a model per row)
            TaskRun.objects.bulk_create(
                [TaskRun(id=run_id, **fields) for run_id, fields in group],
                update_conflicts=True,
                unique_fields=["id"],
                update_fields=list(names),
            )


#: Rows per statement (SQLite allows 32,766 parameters in one).
ROWS_PER_STATEMENT = 500


#: Statements built, by database alias, builder and shape. Keyed by the alias, not the
#: connection's ``quote_name``: a bound method would keep every thread's connection.
_statements: dict[tuple[Any, ...], str] = {}


def _sql(db: BaseDatabaseWrapper, build: Callable[..., str], *shape: Any) -> str:
    """The statement ``build(quote, *shape)`` makes on ``db``'s database, built once."""
    key = (db.alias, build, *shape)
    sql = _statements.get(key)
    if sql is None:
        sql = _statements[key] = build(db.ops.quote_name, *shape)
    return sql


def _upsert_sql(
    quote: Callable[[str], str],
    table: str,
    columns: tuple[str, ...],
    updated: tuple[str, ...],
    rows: int,
) -> str:
    values = f"({', '.join(['%s'] * len(columns))})"
    return (
        f"INSERT INTO {quote(table)} ({', '.join(map(quote, columns))}) "
        f"VALUES {', '.join([values] * rows)} ON CONFLICT ({quote(columns[0])}) "
        f"DO UPDATE SET {', '.join(f'{quote(c)} = EXCLUDED.{quote(c)}' for c in updated)}"
    )


#: Field types whose Python values (``str``, ``int``) go to the database as they are.
_PLAIN_TYPES = frozenset({"CharField", "TextField", "PositiveIntegerField"})


#: How a value goes to the database driver, given the connection it goes through.
Adapter = Callable[[Any, BaseDatabaseWrapper], Any]


def _adapter(field: Any) -> Adapter | None:
    """How a value of ``field`` is handed to the database driver (``None``: as it is).

    What ``get_db_prep_save`` ends in for the run table's field types, without
    the calls in between: JSON through the backend's ``adapt_json_value``,
    aware datetimes through ``adapt_datetimefield_value``. The connection is
    passed at each call, so a plan holds none: a thread's connection goes with it.
    """
    kind = field.get_internal_type()
    if kind in _PLAIN_TYPES:
        return None
    if kind == "JSONField":
        encoder = field.encoder
        return lambda value, db: db.ops.adapt_json_value(value, encoder)
    if kind == "DateTimeField":
        return lambda value, db: db.ops.adapt_datetimefield_value(value)
    return lambda value, db: field.get_db_prep_save(value, connection=db)


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """How rows of one field set are written on one connection: worked out once, not per
    statement (Django's field methods cost a worker more than the statement's own CPU)."""

    columns: tuple[str, ...]
    #: The columns the rows give (those an existing row gets on conflict).
    updated: tuple[str, ...]
    #: Every column's value as the database takes it: the other columns' defaults, ``None``
    #: where a row or :attr:`fresh` fills it in.
    template: tuple[Any, ...]
    #: The columns whose default is made anew for each statement (``created_at``'s now).
    fresh: tuple[tuple[int, Field[Any, Any]], ...]
    #: Where each given field goes, and how its value is adapted (``None``: as it is).
    adapters: tuple[tuple[int, str, Adapter | None], ...]

    def given(self, fields: Fields, db: BaseDatabaseWrapper) -> Iterator[tuple[int, Any]]:
        """Where each of ``fields`` goes, and its value as the database driver takes it."""
        for index, name, adapt in self.adapters:
            value = fields[name]
            yield index, value if adapt is None or value is None else adapt(value, db)


def _pk(run_id: str, db: BaseDatabaseWrapper) -> Any:
    """The run id as the database driver takes it."""
    pk = TaskRun._meta.pk
    assert pk is not None
    return pk.get_db_prep_save(uuid.UUID(run_id), db)


#: Static defaults: an empty container's database value is the same every time.
_SAME_EVERY_TIME = (dict, list)


#: The plans, by database alias and field set: a few, whatever the number of threads.
_plans: dict[tuple[str, tuple[str, ...]], _Plan] = {}


def _plan(db: BaseDatabaseWrapper, names: tuple[str, ...]) -> _Plan:
    """The plan of rows with the fields ``names`` on ``db``'s database."""
    plan = _plans.get((db.alias, names))
    if plan is None:
        plan = _plans[db.alias, names] = _new_plan(db, names)
    return plan


def _new_plan(db: BaseDatabaseWrapper, names: tuple[str, ...]) -> _Plan:
    meta = TaskRun._meta
    pk = meta.pk
    assert pk is not None
    fields = [pk, *(field for field in meta.concrete_fields if field is not pk)]
    given = set(names)

    def fresh(field: Field[Any, Any]) -> bool:
        return (
            field.has_default()
            and callable(field.default)
            and field.default not in _SAME_EVERY_TIME
        )

    return _Plan(
        columns=tuple(field.column or "" for field in fields),
        updated=tuple(field.column or "" for field in fields if field.name in given),
        template=tuple(
            None
            if field.name in given or field is pk or fresh(field)
            else field.get_db_prep_save(field.get_default(), db)
            for field in fields
        ),
        fresh=tuple(
            (index, field)
            for index, field in enumerate(fields)
            if field.name not in given and field is not pk and fresh(field)
        ),
        adapters=tuple(
            (index, field.name, _adapter(field))
            for index, field in enumerate(fields)
            if field.name in given
        ),
    )


def _execute_upsert(
    db: BaseDatabaseWrapper, names: tuple[str, ...], group: list[tuple[str, Fields]]
) -> None:
    """The upsert ``bulk_create`` would send, with only the given fields adapted per row.

    ``bulk_create`` costs about 0.2 ms of CPU per row in Django's SQL compiler, which
    a worker pays under the GIL its runs need. Here the other columns get their
    defaults once per batch, and plain strings and numbers are not adapted at all.
    """
    plan = _plan(db, names)
    template = list(plan.template)
    for index, field in plan.fresh:
        template[index] = field.get_db_prep_save(field.get_default(), db)
    params: list[Any] = []
    for run_id, values in group:
        row = list(template)
        row[0] = _pk(run_id, db)
        for index, value in plan.given(values, db):
            row[index] = value
        params.extend(row)
    width = len(plan.columns)
    table = TaskRun._meta.db_table
    with db.cursor() as cursor:
        for start in range(0, len(group), ROWS_PER_STATEMENT):
            chunk = params[start * width : (start + ROWS_PER_STATEMENT) * width]
            count = len(chunk) // width
            sql = _sql(db, _upsert_sql, table, plan.columns, plan.updated, count)
            cursor.execute(sql, chunk)


def _update_sql(
    quote: Callable[[str], str], table: str, columns: tuple[str, ...], pk: str, unless: int
) -> str:
    unlisted = ", ".join(["%s"] * unless)
    return (
        f"UPDATE {quote(table)} SET {', '.join(f'{quote(c)} = %s' for c in columns)} "
        f"WHERE {quote(pk)} = %s AND {quote('attempt')} = %s "
        f"AND NOT ({quote('status')} IN ({unlisted}))"
    )


def update_unless(run_id: str, attempt: int, unless: Iterable[str], fields: Fields) -> int:
    """Set ``fields`` on the row of ``run_id`` at ``attempt`` unless its status is one of
    ``unless``; return how many rows changed (0 or 1).

    The ``UPDATE`` the ORM would send, built once per field set: a worker claims
    a stored run's row with it before every run, and Django's compiler costs
    more CPU than SQLite spends on the statement.
    """
    statuses = tuple(unless)
    db = connections[router.db_for_write(TaskRun)]
    if db.vendor not in ("sqlite", "postgresql"):
        rows = TaskRun.objects.filter(pk=run_id, attempt=attempt).exclude(status__in=statuses)
        return rows.update(**fields)
    plan = _plan(db, tuple(fields))
    params = [value for _, value in plan.given(fields, db)]
    params += [_pk(run_id, db), attempt, *statuses]
    table, pk_column = TaskRun._meta.db_table, plan.columns[0]  # a plan's columns: the pk first
    sql = _sql(db, _update_sql, table, plan.updated, pk_column, len(statuses))
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)
