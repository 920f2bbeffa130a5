"""The dashboard's pictures, drawn on the server as SVG: no script, no CDN, no library.

Each bar and point carries a ``<title>`` (its numbers, shown on hover and read by
screen readers), and each chart a summary, so the numbers are there for whoever
would rather read them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .. import times
from ..queues.history import Bucket

WIDTH, HEIGHT, TOP, BOTTOM = 720, 120, 14, 16


def _label(bucket: Bucket, window: str) -> str:
    return bucket.start.strftime("%H:%M" if window == "hour" else "%a %H:00")


def _frame(chart_id: str, summary: str, body: SafeString, first: str, last: str, top: str) -> str:
    return format_html(
        '<svg id="{}" class="taskkit-chart" role="img" viewBox="0 0 {} {}" width="100%" '
        'preserveAspectRatio="none" aria-label="{}"><title>{}</title>'
        '<text x="0" y="10" class="axis">{}</text>{}'
        '<text x="0" y="{}" class="axis">{}</text>'
        '<text x="{}" y="{}" class="axis" text-anchor="end">{}</text></svg>',
        chart_id, WIDTH, HEIGHT, summary, summary, top, body,
        HEIGHT - 2, first, WIDTH, HEIGHT - 2, last,
    )  # fmt: skip


def _scale(peak: float) -> Callable[[float], float]:
    room = HEIGHT - TOP - BOTTOM
    return lambda value: room * value / peak if peak else 0.0


def runs_chart(buckets: Sequence[Bucket], window: str) -> str:
    """Stacked bars per bucket: runs that succeeded, and on top those that failed."""
    peak = max((bucket.finished for bucket in buckets), default=0)
    high, width = _scale(peak), WIDTH / max(len(buckets), 1)
    base = HEIGHT - BOTTOM
    bars = format_html_join(
        "",
        '<g class="bucket"><title>{}: {} succeeded, {} failed</title>'
        '<rect class="ok" x="{}" y="{}" width="{}" height="{}"></rect>'
        '<rect class="failed" x="{}" y="{}" width="{}" height="{}"></rect></g>',
        (
            (
                _label(b, window), b.succeeded, b.failed,
                *_n(i * width, base - high(b.succeeded), width * 0.8, high(b.succeeded)),
                *_n(i * width, base - high(b.finished), width * 0.8, high(b.failed)),
            )
            for i, b in enumerate(buckets)
        ),
    )  # fmt: skip
    done = sum(b.succeeded for b in buckets)
    failed = sum(b.failed for b in buckets)
    summary = f"Runs finished: {done} succeeded, {failed} failed, in the last {window}"
    return _frame("chart-runs", summary, bars, *_ends(buckets, window), f"{peak} max")


def wait_chart(buckets: Sequence[Bucket], window: str) -> str:
    """The mean queue wait per bucket, as points joined by a line where runs finished."""
    waits = [b.wait for b in buckets]
    peak = max((w for w in waits if w is not None), default=0.0)
    high, width = _scale(peak), WIDTH / max(len(buckets), 1)
    base = HEIGHT - BOTTOM
    points = [
        (i * width + width * 0.4, base - high(b.wait), b)
        for i, b in enumerate(buckets)
        if b.wait is not None
    ]
    line = format_html(
        '<polyline class="wait" fill="none" points="{}"></polyline>',
        " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points),
    )
    dots = format_html_join(
        "",
        '<circle class="wait" cx="{}" cy="{}" r="2.5"><title>{}: {} mean wait</title></circle>',
        ((*_n(x, y), _label(b, window), times.span(b.wait)) for x, y, b in points),
    )
    summary = f"Mean queue wait, longest {times.span(peak)}, in the last {window}"
    body = format_html("{}{}", line, dots)
    return _frame("chart-wait", summary, body, *_ends(buckets, window), times.span(peak))


def _n(*numbers: float) -> tuple[str, ...]:
    """Coordinates as SVG text (``format_html`` would escape, not format, numbers)."""
    return tuple(f"{number:.1f}" for number in numbers)


def _ends(buckets: Sequence[Bucket], window: str) -> tuple[str, str]:
    if not buckets:
        return "", ""
    return _label(buckets[0], window), _label(buckets[-1], window)
