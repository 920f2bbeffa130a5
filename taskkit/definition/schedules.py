"""A schedule as a person reads it, in one wording wherever one is shown.

Cron expressions are described by ``cron-descriptor`` (the library
django-celery-beat uses too), frequencies by :func:`describe_every`.
"""

from __future__ import annotations

from datetime import timedelta

from cron_descriptor import ExpressionDescriptor, Options

_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))


def describe_every(every: timedelta | float) -> str:
    """``Every 30 seconds``, ``Every minute``, ``Every 1 day 2 hours``: cron-descriptor's words."""
    seconds = round(every.total_seconds() if isinstance(every, timedelta) else every)
    parts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append((count, unit))
    if not parts:
        return "Every 0 seconds"
    if parts == [(1, parts[0][1])]:
        return f"Every {parts[0][1]}"
    return "Every " + " ".join(f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts)


def describe_cron(expression: str) -> str:
    """``At 03:00, only on Sunday`` for ``0 3 * * 0``; the expression itself if undescribable."""
    options = Options()
    options.use_24hour_time_format = True
    try:
        return str(ExpressionDescriptor(expression, options).get_description())
    except Exception:  # a stored expression cron-descriptor cannot read: show it as it is
        return expression


def describe_schedule(cron: str | None = None, every: timedelta | float | None = None) -> str:
    """The one wording of a schedule: its cron described, else its frequency, else ``""``."""
    if cron:
        return describe_cron(cron)
    if every is not None:
        return describe_every(every)
    return ""
