"""The payload of an API call: the query string merged with the JSON body's ``payload``.

Nitro's rule: query values stay strings, a key given once is one value, a key
given again becomes a list, and the body wins over the query.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest

#: Query keys the API reads itself; they never reach the payload.
RESERVED = frozenset({"enqueue"})


class BadRequest(ValueError):
    """The request's payload cannot be read (HTTP 400)."""


def from_query(request: HttpRequest) -> dict[str, Any]:
    return {
        key: values[0] if len(values) == 1 else values
        for key, values in request.GET.lists()
        if key not in RESERVED
    }


def from_body(request: HttpRequest) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    try:
        body = json.loads(request.body)
    except ValueError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise BadRequest(f"The body must be a JSON object, not {type(body).__name__}.")
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise BadRequest(f"'payload' must be a JSON object, not {type(payload).__name__}.")
    return payload


def merged(request: HttpRequest) -> dict[str, Any]:
    """The query's values, overridden by the body's ``payload``."""
    return {**from_query(request), **from_body(request)}
