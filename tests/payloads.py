"""Payloads the tests build: deep ones, past every check."""

from __future__ import annotations

from typing import Any


def nested(levels: int) -> dict[str, Any]:
    """A payload ``levels`` deep: ``{"a": {"a": ... {}}}``."""
    payload: dict[str, Any] = {}
    for _ in range(levels - 1):
        payload = {"a": payload}
    return payload
