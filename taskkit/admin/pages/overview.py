"""The dashboard: every queue with its length and oldest message, the runs' counts, charts of
what finished lately (by task or queue), and the workers."""

from __future__ import annotations

import contextlib

from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from ... import queues
from ...queues.history import WINDOWS, history
from ...registry import all_tasks
from ..charts import runs_chart, wait_chart
from .common import BROKER_ERRORS, broker_problem, page, viewer

#: Seconds between the page's updates in place (``static/taskkit/live.js``).
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


def charts(request: HttpRequest, details: queues.Details | None) -> dict[str, object]:
    """The charts' context: the window, task and queue chosen (unknown ones ignored)."""
    window = request.GET.get("window", "hour")
    window = window if window in WINDOWS else "hour"
    tasks = sorted(all_tasks())
    queue_names = sorted(queue.name for queue in details.queues) if details else []
    task = request.GET.get("task") if request.GET.get("task") in tasks else None
    queue = request.GET.get("queue") or None
    buckets = history(window, task=task, queue=queue)
    return {
        "window": window,
        "windows": list(WINDOWS),
        "chart_task": task or "",
        "chart_queue": queue or "",
        "chart_tasks": tasks,
        "chart_queues": queue_names,
        "runs_chart": runs_chart(buckets, window),
        "wait_chart": wait_chart(buckets, window),
    }


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
        **charts(request, details),
    )
