"""Validation of five-field cron expressions, so a typo fails at import, not at 3 a.m.

Only the syntax is checked here; turning an expression into run times is the
scheduler's job (django-celery-beat's ``CrontabSchedule``).
"""

from __future__ import annotations

import re

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

# (field name, lowest, highest, names mapped to numbers)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {name: i for i, name in enumerate(_MONTHS, start=1)}),
    ("day of week", 0, 7, {name: i for i, name in enumerate(_DAYS)}),
)

_ITEM = re.compile(r"^(?P<range>\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?$")


def _value(token: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    if token in names:
        return names[token]
    if not token.isdigit():
        raise ValueError(f"{field}: {token!r} is not a number")
    number = int(token)
    if not low <= number <= high:
        raise ValueError(f"{field}: {number} is outside {low}-{high}")
    return number


def _check_field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> None:
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"{field}: {item!r} is not a cron item")
        step = match.group("step")
        if step is not None and int(step) == 0:
            raise ValueError(f"{field}: a step of 0 never fires")
        bounds = match.group("range")
        if bounds == "*":
            continue
        first, _, last = bounds.partition("-")
        start = _value(first, field, low, high, names)
        if last and _value(last, field, low, high, names) < start:
            raise ValueError(f"{field}: range {bounds!r} runs backwards")


def normalize_cron(expression: str) -> str:
    """Return ``expression`` with aliases expanded and spaces folded; raise ``ValueError`` if bad.

    >>> normalize_cron("@hourly")
    '0 * * * *'
    """
    if not isinstance(expression, str):
        raise ValueError(f"a cron expression is a string, not {type(expression).__name__}")
    text = ALIASES.get(expression.strip().lower(), expression.strip().lower())
    parts = text.split()
    if len(parts) != len(_FIELDS):
        raise ValueError(f"{expression!r} has {len(parts)} fields; cron needs 5")
    for part, (field, low, high, names) in zip(parts, _FIELDS, strict=True):
        _check_field(part, field, low, high, names)
    return " ".join(parts)
