"""One time display: the project's zone, to the second, always saying which."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.template import Context, Template

import taskkit
from taskkit import times
from taskkit.api.responses import json_response
from tests.integration.conftest import current, make_app, transport_settings

MOMENT = datetime(2026, 1, 5, 8, 0, 7, 250_000, tzinfo=UTC)


@pytest.fixture
def paris(settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Paris"


@pytest.mark.usefixtures("paris")
def test_iso_and_shown_follow_the_projects_zone_and_name_it() -> None:
    assert times.iso(MOMENT) == "2026-01-05T09:00:07+01:00"
    assert times.shown(MOMENT) == "2026-01-05 09:00:07 CET"
    assert times.iso(None) is None and times.shown(None) == "-"
    summer = MOMENT.replace(month=7)
    assert times.shown(summer) == "2026-07-05 10:00:07 CEST"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.25, "0.25 s"), (9.994, "9.99 s"), (42.4, "42 s"), (59.6, "1 min 0 s"),
     (182, "3 min 2 s"), (7500, "2 h 5 min")],
)  # fmt: skip
def test_spans_read_at_a_glance(seconds: float | None, text: str) -> None:
    assert times.span(seconds) == text


@pytest.mark.usefixtures("paris")
def test_the_http_api_and_the_admins_filters_say_the_same_time() -> None:
    body = json.loads(json_response({"at": MOMENT}).content)
    assert body["at"].startswith("2026-01-05T09:00:07") and body["at"].endswith("+01:00")
    rendered = Template("{% load taskkit_times %}{{ at|moment }} | {{ at|ago }}").render(
        Context({"at": MOMENT})
    )
    assert rendered.startswith("2026-01-05 09:00:07 CET | ")
    assert '<time title="2026-01-05 09:00:07 CET">' in rendered


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("paris")
def test_taskqueue_prints_times_in_the_projects_zone(tmp_path: Path) -> None:
    app = make_app("times", "filesystem://", **transport_settings("filesystem", tmp_path))
    with current(app):
        taskkit.enqueue("echo:payload", {"n": 1}, queue="times")
        out = StringIO()
        call_command("taskqueue", "list", "times", "--json", stdout=out)
    (message,) = json.loads(out.getvalue())
    assert message["enqueued_at"].endswith(("+01:00", "+02:00"))  # Paris, whatever the date
