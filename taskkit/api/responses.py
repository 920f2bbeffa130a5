"""JSON responses that a browser never takes for a page: a ``<script>`` inside stays inert."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse


def json_response(data: Any, status: int = 200, **headers: str) -> JsonResponse:
    response = JsonResponse(data, status=status, safe=False, json_dumps_params={"default": str})
    response["X-Content-Type-Options"] = "nosniff"
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def error(status: int, message: str, **headers: str) -> JsonResponse:
    """``{"error": message}`` with ``status``."""
    return json_response({"error": message}, status, **headers)
