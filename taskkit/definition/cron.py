"""Cron expressions, checked by the parser that runs them: Celery's ``crontab``.

Beat (django-celery-beat's rows, taskkit's scheduler) builds a ``crontab`` from
the five fields, so what :func:`normalize_cron` accepts is exactly what fires;
there is no second parser to disagree with it. The one liberty taken: ``7`` in
the day-of-week field means Sunday, as in most crons, and is stored as ``0``
(Celery counts Sunday as 0 only).
"""

from __future__ import annotations

import re

from celery.schedules import crontab, crontab_parser

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: The fields, in order, and ``crontab``'s names for them.
FIELDS = (
    ("minute", "minute"),
    ("hour", "hour"),
    ("day of month", "day_of_month"),
    ("month", "month_of_year"),
    ("day of week", "day_of_week"),
)

_SEVEN = re.compile(r"(?<![0-9])7(?![0-9])")


def sunday_as_zero(days: str) -> str:
    """The day-of-week field with ``7`` (Sunday) as ``0``: ``5-7`` becomes ``0,5,6``."""
    if not _SEVEN.search(days):
        return days
    try:
        found = crontab_parser(8).parse(days)  # 0-7, so 7 parses; then 7 is Sunday, 0
    except Exception as exc:  # crontab_parser's own ParseException, or ValueError
        raise ValueError(f"day of week: {exc}") from None
    return ",".join(str(day) for day in sorted({day % 7 for day in found}))


def cron_fields(expression: str) -> list[str]:
    """The five fields of ``expression``, aliases expanded; ``ValueError`` if not five."""
    if not isinstance(expression, str):
        raise ValueError(f"a cron expression is a string, not {type(expression).__name__}")
    text = expression.strip().lower()
    parts = ALIASES.get(text, text).split()
    if len(parts) != len(FIELDS):
        raise ValueError(f"{expression!r} has {len(parts)} fields; cron needs 5")
    parts[4] = sunday_as_zero(parts[4])
    return parts


def normalize_cron(expression: str) -> str:
    """Return ``expression`` as stored and run (aliases expanded, ``7`` as ``0``, spaces folded).

    Raise ``ValueError`` naming the field when Celery's ``crontab`` refuses it.

    >>> normalize_cron("@hourly")
    '0 * * * *'
    >>> normalize_cron("0 3 * * 7")
    '0 3 * * 0'
    """
    parts = cron_fields(expression)
    for value, (label, name) in zip(parts, FIELDS, strict=True):
        try:
            crontab(**{name: value})
        except Exception as exc:  # ValueError, or crontab_parser's ParseException
            raise ValueError(f"{expression!r}: {label} {value!r}: {exc}") from None
    try:  # the fields together (the 31st of February never occurs)
        crontab(**{name: value for value, (_, name) in zip(parts, FIELDS, strict=True)})
    except Exception as exc:
        raise ValueError(f"{expression!r}: {exc}") from None
    return " ".join(parts)
