"""The dashboard: every queue with its length and oldest message, the runs' counts, workers."""

from __future__ import annotations

import contextlib

from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from ... import queues
from .common import BROKER_ERRORS, broker_problem, page, viewer

#: Seconds between the page's reloads (a meta refresh: no JavaScript needed).
REFRESH = 5


def queue_rows(details: queues.Details | None) -> list[tuple[queues.QueueInfo, str]]:
    """Each queue with its queue browser's address (``""`` for one that has none).

    A queue named against the queue rule (made outside taskkit, or stored by an
    older version: ``a/b``) has no page: it is listed without a link, and
    ``taskqueue purge`` still clears it.
    """
    rows = []
    for queue in details.queues if details else ():
        link = ""
        with contextlib.suppress(NoReverseMatch):
            link = reverse("admin:taskkit_queue", args=[queue.name])
        rows.append((queue, link))
    return rows


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
        queue_rows=queue_rows(details),
        error=error,
        workers=queues.worker_list(),
        now=timezone.now(),
        refresh=REFRESH,
    )
