"""Payloads and results are JSON; this module is where that is enforced.

A payload is a JSON object. Its canonical form (sorted keys, no spaces) is what
single-flight compares and what queues store, so equal payloads are equal bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError

from ..exceptions import InvalidPayload, ResultNotSerializable
from .meta import PayloadSchema


def canonical_json(value: Any) -> str:
    """Serialise ``value`` as compact JSON with sorted keys; raise ``TypeError``/``ValueError``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def parse_payload(text: str) -> dict[str, Any]:
    """Parse a payload given as JSON text (CLI, HTTP); ``InvalidPayload`` unless it is an object."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidPayload(f"payload is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidPayload(f"payload must be a JSON object, not {type(value).__name__}")
    return value


def _check_schema(payload: dict[str, Any], schema: PayloadSchema) -> None:
    if isinstance(schema, Mapping):
        for key, kind in schema.items():
            if key not in payload:
                raise InvalidPayload(f"payload is missing {key!r}")
            value = payload[key]
            kinds = kind if isinstance(kind, tuple) else (kind,)
            if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
                expected = (
                    kind.__name__
                    if isinstance(kind, type)
                    else " or ".join(k.__name__ for k in kind)
                )
                raise InvalidPayload(f"payload field {key!r} must be {expected}")
        return
    try:
        schema(payload)
    except (TypeError, ValueError, ValidationError) as exc:
        raise InvalidPayload(f"payload does not match the task's schema: {exc}") from exc


def normalize_payload(
    payload: Mapping[str, Any] | None,
    *,
    schema: PayloadSchema | None = None,
    max_bytes: int | None = None,
) -> tuple[dict[str, Any], str]:
    """Check ``payload`` and return it as a fresh plain dict together with its canonical JSON.

    Raise :class:`InvalidPayload` for anything but a JSON object, for a payload
    over ``max_bytes``, and for one the task's schema rejects. Keys become strings,
    as JSON makes them.
    """
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise InvalidPayload(
            f"payload must be a mapping (a JSON object), not {type(payload).__name__}"
        )
    try:
        plain: dict[str, Any] = json.loads(json.dumps(payload, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidPayload(f"payload is not JSON-serialisable: {exc}") from exc
    text = canonical_json(plain)
    if max_bytes is not None and len(text.encode()) > max_bytes:
        raise InvalidPayload(f"payload is {len(text.encode())} bytes; the limit is {max_bytes}")
    if schema is not None:
        _check_schema(plain, schema)
    return plain, text


def received_payload(payload: Any, *, schema: PayloadSchema | None = None) -> dict[str, Any]:
    """A payload decoded from a JSON message, checked again without a second JSON round trip.

    It is plain JSON already; what may have changed since it was sent is the
    task's schema, so that (and the payload being an object) is all a worker checks.
    """
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise InvalidPayload(f"payload must be a JSON object, not {type(payload).__name__}")
    if schema is not None:
        _check_schema(payload, schema)
    return payload


def normalize_result(name: str, result: Any) -> Any:
    """Return ``result`` as it reads back from JSON; ``ResultNotSerializable`` if it cannot be."""
    try:
        return json.loads(json.dumps(result, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ResultNotSerializable(name, str(exc)) from exc
