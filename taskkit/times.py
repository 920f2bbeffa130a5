"""One way to show a moment: in the project's time zone, to the second, naming the zone.

The admin, ``taskqueue`` and the JSON of the commands and the HTTP API all show
times through here, so a time read in one is the same text in another, and no
reader has to guess the zone: ISO 8601 text carries its offset, the admin's text
the zone's name. Durations get seconds, where seconds matter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import dateformat, timezone

#: The earliest moment a database column holds, and earlier than any run.
EARLIEST = datetime.min.replace(tzinfo=UTC)

#: What the admin shows: ``2026-12-04 09:02:28 CET``.
SHOWN = "Y-m-d H:i:s T"


def ago(now: datetime, span: timedelta) -> datetime:
    """``now - span``; :data:`EARLIEST` when that reaches past year 1 (nothing is older)."""
    try:
        return now - span
    except OverflowError:
        return EARLIEST


def local(moment: datetime) -> datetime:
    """``moment`` in the project's current time zone (a naive moment is taken as such)."""
    return timezone.localtime(moment) if timezone.is_aware(moment) else moment


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with the offset, to the second: ``2026-12-04T09:02:28+01:00``."""
    return None if moment is None else local(moment).isoformat(timespec="seconds")


def shown(moment: datetime | None, empty: str = "-") -> str:
    """The admin's text for ``moment``, naming the zone; ``empty`` for no moment."""
    return empty if moment is None else dateformat.format(local(moment), SHOWN)


def span(seconds: float | None, empty: str = "-") -> str:
    """A duration to read at a glance: ``0.25 s``, ``42 s``, ``3 min 2 s``, ``2 h 5 min``."""
    if seconds is None:
        return empty
    if seconds < 10:
        return f"{seconds:.2f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
