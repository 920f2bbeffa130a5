"""Property tests of the worker and of enqueue: any message for a task ends as a run on the
record, and any enqueue is sent or refused with a clear error.

A hand-made message may carry anything in its context and payload: ids that
are no UUIDs, attempts of any kind, text no database stores (NUL, lone
surrogates, more than a column holds). Whatever arrives, the worker raises
only the task's own error or a clear taskkit error, and the run ends failed or
succeeded in the run table, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

import contextlib
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import taskkit
from taskkit.bridge.carrier import CARRIER
from taskkit.bridge.work.run import run_message
from taskkit.exceptions import TaskkitError
from taskkit.models import FINISHED, TaskRun
from tests.apps.nested.tasks.echo.fail import EchoError

pytestmark = pytest.mark.django_db(transaction=True)

#: Any text, lone surrogates and NUL included.
texts = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(
    ["\x00", "\ud800", "x" * 300, "default", "echo:payload"]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
contexts = st.fixed_dictionaries(
    {},
    optional={
        "run_id": st.uuids().map(str) | texts | st.integers() | st.none(),
        "attempt": st.integers(-2, 2**40) | texts | st.floats() | st.none(),
        "source": st.sampled_from(["worker", "beat", "retry"]) | texts,
        "scheduled_time": st.datetimes().map(lambda when: when.isoformat()) | json_values,
        "enqueued_at": st.floats() | json_values,
        "queue": texts,
        "task": texts,
        "stored": st.booleans(),
        "claim": texts,
    },
)
payloads = st.dictionaries(texts, json_values, max_size=3) | json_values


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.sampled_from(["echo:payload", "echo:fail", "track:outbox", CARRIER, "gone:task"]),
    payloads,
    contexts,
    texts,
    st.booleans(),
)
# what it found once, kept: a stored run's claim with a routing key no database stores,
# text past its column, NUL in a payload, an attempt out of its column's range
@example("echo:payload", {}, {"run_id": str(uuid.UUID(int=1)), "stored": True}, "\ud800", False)
@example(CARRIER, {"a": 1}, {"task": "x" * 300, "queue": "\x00"}, "default", False)
@example("echo:payload", {"": "\x00"}, {"attempt": 2**31}, "q" * 300, False)
@example("echo:fail", {"a": 1}, {"attempt": 0, "source": "\x00"}, "default", False)
def test_any_message_for_a_task_ends_as_a_finished_run(
    name: str, payload: Any, context: dict[str, Any], routing_key: str, keywords: bool
) -> None:
    TaskRun.objects.all().delete()
    request = SimpleNamespace(
        id=str(uuid.uuid4()), hostname="w1@host", delivery_info={"routing_key": routing_key}
    )
    # a clear error, or the task's own; anything else fails the test
    ctask: Any = SimpleNamespace(name=name, request=request)
    with contextlib.suppress(TaskkitError, EchoError):
        if keywords:  # as Celery sends taskkit's messages
            run_message(ctask, payload=payload, context=context)
        else:  # as ``celery call NAME --args`` may
            run_message(ctask, payload, context)
    rows = list(TaskRun.objects.values_list("status", flat=True))
    assert len(rows) == 1 and rows[0] in FINISHED, rows


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.sampled_from(["echo:payload", "track:outbox"]), payloads, texts | st.none())
def test_any_enqueue_is_sent_or_refused_with_a_clear_error(
    name: str, payload: Any, queue: str | None
) -> None:
    """The sending side of the same rule: what a worker cannot store is refused at enqueue
    (``InvalidPayload``, ``ValueError`` for a queue name), never a database error."""
    TaskRun.objects.all().delete()
    try:
        handle = taskkit.enqueue(name, payload, queue=queue)
    except (TaskkitError, ValueError):
        assert not TaskRun.objects.exists()  # nothing half-done
        return
    if name == "track:outbox":  # its row is written before its message is sent
        assert TaskRun.objects.filter(pk=handle.id).exists()


#: Text any database stores, of any length a column holds.
stored_texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
stored_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | stored_texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(stored_texts, inner, max_size=3),
    max_leaves=6,
)
rows = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["echo:payload", "gone:task", CARRIER])
        | stored_texts.map(lambda text: text[:200]),
        "queue": st.sampled_from(["default", "q:1"]) | stored_texts.map(lambda text: text[:200]),
        # not null: the column is NOT NULL (JSON's null is SQL's NULL there)
        "payload": st.dictionaries(stored_texts, stored_json, max_size=3)
        | stored_json.filter(lambda value: value is not None),
    },
    optional={
        "source": stored_texts.map(lambda text: text[:16]),
        "attempt": st.integers(1, 2**31 - 1),
        "priority": st.integers(0, 32767),
        "canvas": stored_json,
    },
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(rows, min_size=1, max_size=3))
def test_any_due_row_is_sent_or_failed_and_the_scheduler_goes_on(
    sent: list[dict[str, Any]], due_rows: list[dict[str, Any]]
) -> None:
    """Whatever a stored row holds (older code's, an operator's edit, a hand-made retry),
    the scheduler's tick sends it or fails it with the reason, and never raises."""
    from datetime import timedelta

    from django.utils import timezone

    from taskkit.models import RunStatus
    from taskkit.scheduling import promote_due

    TaskRun.objects.all().delete()
    sent.clear()
    due = timezone.now() - timedelta(seconds=1)
    for fields in due_rows:
        TaskRun.objects.create(status=RunStatus.SCHEDULED, scheduled_for=due, **fields)
    promote_due()
    statuses = set(TaskRun.objects.values_list("status", flat=True))
    assert statuses <= {RunStatus.QUEUED, RunStatus.FAILED}, statuses
    queued = {
        str(pk)
        for pk in TaskRun.objects.filter(status=RunStatus.QUEUED).values_list("pk", flat=True)
    }
    assert queued == {message["task_id"] for message in sent}  # some maybe twice: see _publish
