"""Payloads and results are JSON, and bad ones are refused before anything runs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest

from taskkit import InvalidPayload, ResultNotSerializable
from taskkit.definition import (
    canonical_json,
    normalize_payload,
    normalize_result,
    parse_payload,
    received_payload,
)
from taskkit.definition.payload import MAX_DEPTH, depth
from tests.payloads import nested


def test_canonical_form_is_order_independent() -> None:
    a, text_a = normalize_payload({"b": 1, "a": [1, {"y": 2, "x": 1}]})
    b, text_b = normalize_payload({"a": [1, {"x": 1, "y": 2}], "b": 1})
    assert a == b and text_a == text_b == '{"a":[1,{"x":1,"y":2}],"b":1}'
    assert list(a) == ["b", "a"]  # the caller's key order is kept in the payload itself


def test_payload_is_a_fresh_plain_copy() -> None:
    original = {"items": [1, 2], "t": (1, 2)}
    plain, _ = normalize_payload(original)
    plain["items"].append(3)
    assert original["items"] == [1, 2]
    assert plain["t"] == [1, 2]


def test_none_is_an_empty_payload() -> None:
    assert normalize_payload(None) == ({}, "{}")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "must be a mapping"),
        ("text", "must be a mapping"),
        ({"when": object()}, "not JSON-serialisable"),
        ({"n": math.nan}, "not JSON-serialisable"),
        ({1: "int key"}, None),  # JSON turns int keys into strings: accepted
        ({"s": {1, 2}}, "not JSON-serialisable"),
    ],
)
def test_non_json_payloads(payload: Any, message: str | None) -> None:
    if message is None:
        assert normalize_payload(payload)[0] == {"1": "int key"}
        return
    with pytest.raises(InvalidPayload, match=message):
        normalize_payload(payload)


def test_size_limit() -> None:
    normalize_payload({"x": "a" * 10}, max_bytes=20)
    with pytest.raises(InvalidPayload, match="the limit is 10"):
        normalize_payload({"x": "a" * 10}, max_bytes=10)


def test_mapping_schema() -> None:
    schema: Mapping[str, Any] = {"user_id": int, "email": (str, type(None))}
    normalize_payload({"user_id": 7, "email": None}, schema=schema)
    with pytest.raises(InvalidPayload, match="missing 'user_id'"):
        normalize_payload({"email": "a@b"}, schema=schema)
    with pytest.raises(InvalidPayload, match="'user_id' must be int"):
        normalize_payload({"user_id": "7", "email": "a@b"}, schema=schema)
    with pytest.raises(InvalidPayload, match="'email' must be str or NoneType"):
        normalize_payload({"user_id": 7, "email": 3}, schema=schema)


def test_callable_schema() -> None:
    def positive(payload: dict[str, Any]) -> None:
        if payload.get("n", 0) < 0:
            raise ValueError("n must not be negative")

    normalize_payload({"n": 1}, schema=positive)
    with pytest.raises(InvalidPayload, match="n must not be negative"):
        normalize_payload({"n": -1}, schema=positive)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{bad", "not valid JSON"),
        ("[1]", "not list"),
        ('"x"', "not str"),
        ("null", "not NoneType"),
        ("[" * 100000, "nests more than 100 levels deep"),
    ],
)
def test_parse_payload_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidPayload, match=message):
        parse_payload(text)


def test_parse_payload() -> None:
    assert parse_payload('{"a": [1, "2"]}') == {"a": [1, "2"]}


def test_results() -> None:
    assert normalize_result("t", {"b": (1, 2), "a": None}) == {"b": [1, 2], "a": None}
    assert list(normalize_result("t", {"b": 1, "a": 2})) == ["b", "a"]
    with pytest.raises(ResultNotSerializable, match="Task 't' returned a result that is not JSON"):
        normalize_result("t", {"x": object()})
    with pytest.raises(ResultNotSerializable):
        normalize_result("t", math.inf)
    assert canonical_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'


def test_bool_is_not_an_int_for_schemas() -> None:
    with pytest.raises(InvalidPayload, match="'n' must be int"):
        normalize_payload({"n": True}, schema={"n": int})
    normalize_payload({"n": True}, schema={"n": (int, bool)})


def test_callable_schema_may_raise_django_validation_error() -> None:
    from django.core.exceptions import ValidationError

    def validate(payload: dict[str, Any]) -> None:
        raise ValidationError("no good")

    with pytest.raises(InvalidPayload, match="no good"):
        normalize_payload({}, schema=validate)


def test_a_received_payload_is_checked_for_shape_and_schema() -> None:
    payload = {"n": 1}
    assert received_payload(payload, schema={"n": int}) is payload  # no copy on the hot path
    assert received_payload(None) == {}
    with pytest.raises(InvalidPayload, match="must be a JSON object, not list"):
        received_payload([1])
    with pytest.raises(InvalidPayload, match="'n' must be str"):
        received_payload(payload, schema={"n": str})


def test_depth_is_measured_without_recursion() -> None:
    assert [depth(v) for v in ({}, {"a": 1}, {"a": [1, {"b": []}]}, nested(50_000))] == [
        1,
        1,
        4,
        50_000,
    ]


def test_a_payload_nested_deeper_than_the_limit_is_refused() -> None:
    assert normalize_payload(nested(MAX_DEPTH))[0] == nested(MAX_DEPTH)
    for levels in (MAX_DEPTH + 1, 5_000):
        with pytest.raises(InvalidPayload, match="nests more than 100 levels deep"):
            normalize_payload(nested(levels))
    wide = {"items": [{"i": i} for i in range(500)]}  # many brackets, shallow: accepted
    assert normalize_payload(wide)[0] == wide


@pytest.mark.parametrize("text", [chr(0xD800), "a" + chr(0xDFFF) + "b", chr(0xDC00) + chr(0xD800)])
def test_a_lone_surrogate_is_refused(text: str) -> None:
    with pytest.raises(InvalidPayload, match="lone surrogate"):
        normalize_payload({"text": text})
    with pytest.raises(InvalidPayload, match="lone surrogate"):
        normalize_payload({text: 1})


def test_paired_surrogates_are_text() -> None:
    emoji = chr(0x1F600)
    assert normalize_payload({"face": emoji})[0] == {"face": emoji}


@pytest.mark.parametrize("payload", [{"t": "a\x00b"}, {"a\x00": 1}, {"deep": [{"x": ["\x00"]}]}])
def test_nul_is_refused_as_postgresql_cannot_store_it(payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload, match="NUL"):
        normalize_payload(payload)
    with pytest.raises(InvalidPayload, match="NUL"):
        received_payload(payload)


def test_the_text_of_an_escaped_nul_is_no_nul() -> None:
    text = {"t": "\\u0000"}  # a backslash, then "u0000": its JSON holds "\\u0000"
    assert normalize_payload(text)[0] == text
    assert received_payload(text) == text


def test_a_received_payload_is_held_to_the_same_rules() -> None:
    with pytest.raises(InvalidPayload, match="nests more than"):
        received_payload(nested(MAX_DEPTH + 1))
    with pytest.raises(InvalidPayload, match="lone surrogate"):
        received_payload({"t": chr(0xD800)})
    with pytest.raises(InvalidPayload, match="the limit is 10"):
        received_payload({"a": "x" * 20}, max_bytes=10)
    assert received_payload({"a": 1}, max_bytes=10) == {"a": 1}


def test_parse_payload_of_empty_text_or_bad_bytes() -> None:
    assert parse_payload("  ") == {}
    assert parse_payload(b'{"a": 1}') == {"a": 1}
    with pytest.raises(InvalidPayload, match="The body is not valid JSON"):
        parse_payload(b"\xff", "The body")
