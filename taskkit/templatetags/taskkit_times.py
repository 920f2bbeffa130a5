"""Template filters that show times as the rest of taskkit does (:mod:`taskkit.times`)."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from .. import times

register = template.Library()


@register.filter
def moment(value: datetime | None) -> str:
    """``2026-12-04 09:02:28 CET``."""
    return times.shown(value)


@register.filter
def ago(value: datetime | None) -> SafeString | str:
    """``3 minutes ago``, with the exact moment on hover (and for screen readers' asking)."""
    if value is None:
        return "-"
    return format_html('<time title="{}">{} ago</time>', times.shown(value), timesince(value))
