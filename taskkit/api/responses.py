"""JSON responses a browser never takes for a page, so a ``<script>`` in them stays inert.

Besides ``application/json`` and ``nosniff``, ``<``, ``>`` and ``&`` are written as
``\\u003c``-style escapes: even a sniffing or misconfigured client finds no markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import JsonResponse

from ..times import local

_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}


class InertJSONEncoder(DjangoJSONEncoder):
    """JSON with no ``<``, ``>`` or ``&`` left; they only ever occur inside strings.

    Moments are written in the project's time zone with their offset, as the admin
    and ``taskqueue`` show them (:mod:`taskkit.times`).
    """

    def default(self, o: Any) -> Any:
        return super().default(local(o) if isinstance(o, datetime) else o)

    def encode(self, o: Any) -> str:
        return super().encode(o).translate(_ESCAPES)


def json_response(
    data: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> JsonResponse:
    response = JsonResponse(dict(data), encoder=InertJSONEncoder, status=status, headers=headers)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JsonResponse:
    """``{"error": message}`` with ``status``."""
    return json_response({"error": message}, status, headers)
