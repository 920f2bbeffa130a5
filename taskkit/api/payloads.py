"""What an API call asks for: the payload (query merged with the body) and the ``enqueue`` flag.

Nitro's merge rule: query values stay strings, a key given once is one value, a
key given again becomes a list, and the JSON body's ``payload`` wins over the query.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from ..definition import parse_payload
from ..exceptions import BadRequest, InvalidPayload

#: Query keys the API reads itself; they never reach the payload.
RESERVED = frozenset({"enqueue"})
YES = frozenset({"", "1", "true", "yes", "on"})
NO = frozenset({"0", "false", "no", "off"})


def read_body(request: HttpRequest) -> bytes:
    """The raw body, read once up front.

    Django's CSRF check reads a form body through ``request.POST``, which consumes
    the stream of a multipart body; once read here, both find it.
    """
    try:
        return request.body
    except RequestDataTooBig:
        raise BadRequest("The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE.") from None


def from_query(request: HttpRequest) -> dict[str, Any]:
    return {
        key: values[0] if len(values) == 1 else values
        for key, values in request.GET.lists()
        if key not in RESERVED
    }


def from_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = parse_payload(body, "The body")
    except InvalidPayload as exc:
        raise BadRequest(str(exc)) from None
    payload = parsed.get("payload", {})
    if not isinstance(payload, dict):
        raise BadRequest(f"'payload' must be a JSON object, not {type(payload).__name__}.")
    return payload


def merged(request: HttpRequest) -> dict[str, Any]:
    """The query's values, overridden by the body's ``payload``."""
    return {**from_query(request), **from_body(read_body(request))}


def wants_enqueue(request: HttpRequest) -> bool:
    """``?enqueue``, ``?enqueue=1`` (or true, yes, on): queue; absent or ``0`` (false, …): run."""
    if "enqueue" not in request.GET:
        return False
    value = request.GET["enqueue"].strip().lower()
    if value in YES:
        return True
    if value in NO:
        return False
    raise BadRequest(f"'enqueue' must be 1 or 0, not {request.GET['enqueue']!r}.")
