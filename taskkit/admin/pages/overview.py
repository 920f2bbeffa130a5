"""The dashboard: every queue with its length and oldest message, the runs' counts, workers."""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from ... import queues
from .common import BROKER_ERRORS, broker_problem, page, viewer

#: Seconds between the page's reloads (a meta refresh: no JavaScript needed).
REFRESH = 5


@viewer
def dashboard(request: HttpRequest, site: AdminSite) -> HttpResponse:
    error = ""
    try:
        details: queues.Details | None = queues.details()
    except BROKER_ERRORS as exc:
        details, error = None, broker_problem(exc)
    return page(
        request,
        site,
        "dashboard.html",
        "Tasks dashboard",
        details=details,
        error=error,
        workers=sorted(queues.workers().items()),
        now=timezone.now(),
        refresh=REFRESH,
    )
