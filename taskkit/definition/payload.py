"""Payloads and results are JSON; this module is where that is enforced.

A payload is a JSON object. Its canonical form (sorted keys, no spaces) is what
single-flight compares and what queues store, so equal payloads are equal bytes.
It nests at most :data:`MAX_DEPTH` deep and its text is valid Unicode: a deeper
payload cannot be handed to a worker's pool process or stored as JSON by the
databases, a lone surrogate (``"\\ud800"``) is refused by PostgreSQL's
``jsonb`` and by every UTF-8 encoder, and so is NUL (``"\\u0000"``) by ``jsonb``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError

from ..exceptions import InvalidPayload, PayloadNotJSON, ResultNotSerializable
from .meta import PayloadSchema

#: Built once: ``json.dumps`` with options builds an encoder per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)
_PLAIN = json.JSONEncoder(allow_nan=False)


def canonical_json(value: Any) -> str:
    """Serialise ``value`` as compact JSON with sorted keys; raise ``TypeError``/``ValueError``.

    The text is ASCII (other characters are escaped): its length is its size in bytes.
    """
    return _CANONICAL.encode(value)


#: How deep a payload may nest (``{"a": {"b": 1}}`` is 2 deep).
MAX_DEPTH = 100


def parse_payload(text: str | bytes, what: str = "payload") -> dict[str, Any]:
    """The one parser of JSON text that should be an object: the HTTP body, forms, the CLI.

    Empty text is ``{}``. Anything else that is not a JSON object, however it
    fails (bad syntax, bad UTF-8, nested too deep for the parser), is
    :class:`InvalidPayload` naming ``what``.
    """
    try:
        if not text.strip():
            return {}
        value = json.loads(text)
    except RecursionError:  # deeper than the parser goes (how deep depends on the Python)
        raise too_deep(what) from None
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidPayload(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidPayload(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def too_deep(what: str = "payload") -> InvalidPayload:
    """The one error for a payload nested too deep, whichever check found it."""
    return InvalidPayload(f"{what} nests more than {MAX_DEPTH} levels deep")


def depth(value: Any) -> int:
    """How deep ``value`` nests, counted without recursion (any depth is safe to measure)."""
    deepest, level = 0, [value]
    while level:
        deepest += 1
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
    return deepest


#: NUL in ASCII JSON text: ``\u0000`` whose backslash is not itself escaped (``\\u0000``
#: is a backslash, then "u0000").
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def suspect(text: str) -> bool:
    """Whether JSON ``text`` may nest too deep or hold a lone surrogate or NUL."""
    return text.count("{") + text.count("[") > MAX_DEPTH or "\\ud" in text or "\\u0000" in text


def check_text(plain: Any, text: str) -> None:
    """:class:`InvalidPayload` if ``plain`` (whose ASCII JSON is ``text``) nests too deep
    or holds a lone surrogate or NUL; cheap unless ``text`` hints at one of them."""
    if text.count("{") + text.count("[") > MAX_DEPTH and depth(plain) > MAX_DEPTH:
        raise too_deep()
    if "\\u0000" in text and _NUL.search(text):  # not an escaped backslash before "u0000"
        raise InvalidPayload("payload text holds NUL (\\u0000), which PostgreSQL cannot store")
    if "\\ud" in text:  # ASCII JSON writes every surrogate as \udXXX: any unpaired one?
        try:
            json.dumps(plain, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise InvalidPayload("payload text has a lone surrogate (not valid Unicode)") from None


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
    plain = json.loads(checked_payload(payload, schema=schema, max_bytes=max_bytes))
    return plain, canonical_json(plain)


def checked_payload(
    payload: Mapping[str, Any] | None,
    *,
    schema: PayloadSchema | None = None,
    max_bytes: int | None = None,
) -> str:
    """:func:`normalize_payload`'s checks; the payload's JSON text, spelled as ``json.dumps``
    (and kombu) spell it, in its own key order. Read back, it is the plain payload.

    Most payloads are checked on that text alone: it is decoded for a schema or a
    text that hints at too deep a nesting or a lone surrogate, and the canonical
    text is written only near the size limit (it is the spelled text without its
    spaces, so never longer).
    """
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise InvalidPayload(
            f"payload must be a mapping (a JSON object), not {type(payload).__name__}"
        )
    try:
        spelled = _PLAIN.encode(payload)
        hinted = json.loads(spelled) if suspect(spelled) else None
    except RecursionError:
        raise too_deep() from None
    except TypeError as exc:
        raise PayloadNotJSON(f"payload is not JSON-serialisable: {exc}") from exc
    except ValueError as exc:
        raise InvalidPayload(f"payload is not JSON-serialisable: {exc}") from exc
    if hinted is not None:  # the same brackets and escapes as the canonical text
        check_text(hinted, spelled)
    if max_bytes is not None and len(spelled) > max_bytes:
        size = len(canonical_json(json.loads(spelled)))
        if size > max_bytes:
            raise InvalidPayload(f"payload is {size} bytes; the limit is {max_bytes}")
    if schema is not None:
        _check_schema(json.loads(spelled), schema)
    return spelled


def received_payload(
    payload: Any, *, schema: PayloadSchema | None = None, max_bytes: int | None = None
) -> dict[str, Any]:
    """A payload decoded from a JSON message, checked again without a second JSON round trip.

    It is plain JSON already, but not necessarily sent by taskkit (``celery call``,
    another producer): the worker checks it is an object within the size, depth
    and text rules, and the task's schema, which may have changed since.
    """
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise InvalidPayload(f"payload must be a JSON object, not {type(payload).__name__}")
    try:
        text = canonical_json(payload)
    except RecursionError:
        raise too_deep() from None
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"payload is not JSON-serialisable: {exc}") from None
    check_text(payload, text)
    if max_bytes is not None and len(text) > max_bytes:
        raise InvalidPayload(f"payload is {len(text)} bytes; the limit is {max_bytes}")
    if schema is not None:
        _check_schema(payload, schema)
    return payload


def normalize_result(name: str, result: Any) -> Any:
    """Return ``result`` as it reads back from JSON; ``ResultNotSerializable`` if it cannot be."""
    try:
        return json.loads(json.dumps(result, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ResultNotSerializable(name, str(exc)) from exc
