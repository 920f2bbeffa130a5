"""Property tests: whatever arrives from outside gives an answer or a clear error, never a crash."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from celery.schedules import crontab
from django.test import RequestFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from kombu import Connection
from kombu.utils.json import dumps, loads

from taskkit.api.payloads import from_body, merged
from taskkit.definition.cron import normalize_cron
from taskkit.definition.names import MAX_NAME_LENGTH, validate_name
from taskkit.exceptions import BadRequest
from taskkit.quarantine import problem
from taskkit.queues.messages import decode
from taskkit.queues.sieve import EVERYTHING, Sieve

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
#: kombu's decoder turns these objects into Python values, and raises on malformed ones.
kombu_typed = st.fixed_dictionaries(
    {
        "__type__": st.sampled_from(["datetime", "date", "time", "uuid", "bytes", "decimal", "x"]),
        "__value__": scalars,
    }
)
json_values = st.recursive(
    scalars | kombu_typed,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
sieves = st.sampled_from(
    [EVERYTHING, Sieve.for_(name="echo:payload", payload={"a": 1}), Sieve.for_(run_id="r")]
)


@given(st.binary(max_size=2000), sieves)
def test_any_bytes_in_a_queue_decode_to_a_message_or_a_named_problem(
    raw: bytes, sieve: Sieve
) -> None:
    sieve.passes(raw)  # never raises either
    message = decode(raw, "default")
    assert message.queue == "default"
    assert message.name or message.problem


envelopes = st.fixed_dictionaries(
    {},
    optional={
        "body": json_values,
        "headers": json_values | st.fixed_dictionaries({"task": json_values, "id": json_values}),
        "properties": json_values | st.fixed_dictionaries({"body_encoding": json_values}),
        "content-type": json_values,
    },
)


@given(envelopes)
def test_any_json_envelope_decodes_to_a_message_or_a_named_problem(
    envelope: dict[str, Any],
) -> None:
    message = decode(dumps(envelope).encode(), "default")
    assert isinstance(message.payload, dict)
    assert message.name or message.problem


delivered = st.fixed_dictionaries(
    {
        "body": st.sampled_from(["[[], {}, {}]", "W1tdLCB7fSwge31d", "{"]) | json_values,
        "properties": st.fixed_dictionaries(
            {
                "delivery_tag": json_values,
                "delivery_info": json_values
                | st.fixed_dictionaries({"exchange": json_values, "routing_key": json_values}),
            },
            optional={"body_encoding": st.sampled_from(["base64", "utf-8"]) | json_values},
        ),
    },
    optional={"headers": json_values, "content-type": st.sampled_from(["application/json", ""])},
)


@given(envelopes | delivered)
def test_what_the_quarantine_lets_through_kombu_can_deliver(envelope: dict[str, Any]) -> None:
    """kombu reads any item with no problem, builds its message and reads its delivery info."""
    raw = dumps(envelope)
    if problem(raw) is not None:
        return
    with Connection("memory://") as connection:
        channel: Any = connection.default_channel
        message = channel.Message(loads(raw), channel=channel)  # as kombu's Redis read does
    assert {"exchange", "routing_key"} <= message.delivery_info.keys()
    assert message.headers is None or isinstance(message.headers, dict)


contexts = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(("run_id", "attempt", "enqueued_at", "task", "source"), json_values),
)


def raw_message(args: Any, payload: Any, context: Any, task: Any) -> bytes:
    """A Celery message of ``task`` with a taskkit payload and context, as kombu queues it."""
    body = json.dumps([args, {"payload": payload, "context": context}, {}])
    envelope = {
        "body": base64.b64encode(body.encode()).decode(),
        "headers": {"task": task, "id": "x"},
        "properties": {"body_encoding": "base64"},
    }
    return dumps(envelope).encode()


@given(json_values, json_values, contexts, json_values)
def test_a_celery_message_with_any_fields_decodes_or_is_skipped(
    args: Any, payload: Any, context: dict[str, Any], task: Any
) -> None:
    message = decode(raw_message(args, payload, context, task), "default")
    assert isinstance(message.name, str)


@given(st.text(max_size=60))
def test_cron_expressions_normalise_or_raise_value_error(expression: str) -> None:
    try:
        normal = normalize_cron(expression)
    except ValueError:
        return
    assert normalize_cron(normal) == normal  # a normal form is stable
    minute, hour, day_of_month, month, day_of_week = normal.split()
    crontab(minute, hour, day_of_week, day_of_month, month)  # and what Beat runs accepts it


@given(st.text(max_size=MAX_NAME_LENGTH + 10))
def test_names_are_valid_or_value_error(name: str) -> None:
    try:
        assert validate_name(name) == name
    except ValueError:
        return
    assert 0 < len(name) <= MAX_NAME_LENGTH and name.isascii() and "/" not in name


query = st.lists(
    st.tuples(st.text(min_size=1, max_size=5), st.text(max_size=5)).filter(
        lambda pair: pair[0] != "enqueue"
    ),
    max_size=6,
)


@settings(deadline=None)
@given(query, st.dictionaries(st.text(max_size=5), json_values, max_size=4))
def test_the_payload_merge_rule(pairs: list[tuple[str, str]], payload: dict[str, Any]) -> None:
    """Query values stay strings; a repeated key is a list; the body's payload wins."""
    request = RequestFactory().post(
        "/?" + urlencode(pairs), json.dumps({"payload": payload}), content_type="application/json"
    )
    result = merged(request)
    for key in {key for key, _ in pairs} - set(payload):
        values = [value for k, value in pairs if k == key]
        assert result[key] == (values[0] if len(values) == 1 else values)
    for key, value in payload.items():
        assert result[key] == value


@given(st.binary(max_size=200))
def test_any_body_is_a_payload_or_bad_request(body: bytes) -> None:
    with contextlib.suppress(BadRequest):
        assert isinstance(from_body(body), dict)


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"payload": [1]}', b"\xff"])
def test_bodies_that_are_no_payload(body: bytes) -> None:
    with pytest.raises(BadRequest):
        from_body(body)


def test_a_message_whose_attempt_is_infinity_decodes_as_malformed() -> None:
    """Found by the test above: ``int(Infinity)`` raised ``OverflowError`` out of the decoder."""
    raw = raw_message([], None, {"attempt": float("inf")}, "echo:payload")
    message = decode(raw, "default")
    assert message.name == ""
    assert message.problem  # shown to an operator as malformed, who can delete it
