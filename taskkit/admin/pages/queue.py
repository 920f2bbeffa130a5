"""One queue's waiting messages, paged, and deleting them: one, the matching, or all."""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse

from ... import queues
from ...definition import parse_payload
from ...exceptions import RunNotFound, TaskNotFound
from ...registry import all_tasks
from .common import (
    BROKER_ERRORS,
    broker_problem,
    confirm,
    cut,
    done,
    manager,
    page,
    short,
    viewer,
)

#: Messages per page.
PER_PAGE = 50


def _page_number(request: HttpRequest) -> int:
    try:
        return max(int(request.GET.get("page", "1")), 1)
    except ValueError:
        return 1


def _unreachable(request: HttpRequest, exc: Exception, queue: str) -> HttpResponse:
    return done(request, broker_problem(exc), "taskkit_queue", queue, error=True)


@viewer
def browse(request: HttpRequest, site: AdminSite, queue: str) -> HttpResponse:
    number = _page_number(request)
    start = (number - 1) * PER_PAGE
    try:
        info = queues.info(queue)
        listable = queues.listable()
        found = queues.list(queue, start, start + PER_PAGE - 1) if listable and info.length else []
    except queues.UnknownQueue as exc:
        raise Http404(str(exc)) from None
    except BROKER_ERRORS as exc:
        text = broker_problem(exc)
        return done(request, text, "taskkit_dashboard_changelist", error=True)
    pages = max(-(-info.length // PER_PAGE), 1)
    return page(
        request,
        site,
        "queue.html",
        f"Queue {queue}",
        queue=info,
        listable=listable,
        rows=[{"message": m, "payload": _shown(m)} for m in found],
        number=number,
        pages=pages,
        previous=number - 1 if number > 1 else None,
        next=number + 1 if number < pages else None,
        task_names=sorted(all_tasks()),
    )


def _shown(message: queues.QueuedMessage) -> str:
    """The payload, or for an item no worker can take, its bytes (as ``repr`` shows them)."""
    if message.problem:
        return cut(repr(message.raw)[2:-1])
    return short(message.payload)


@manager
def delete_run(request: HttpRequest, site: AdminSite, queue: str) -> HttpResponse:
    run_id = request.POST.get("run_id", "")
    question = f"Delete run {run_id} from queue {queue}? It will not run."
    back = reverse("admin:taskkit_queue", args=[queue])
    if (asking := confirm(request, site, question, back)) is not None:
        return asking
    try:
        found = queues.delete_run(run_id)
    except RunNotFound as exc:
        return done(request, str(exc), "taskkit_queue", queue, error=True)
    except BROKER_ERRORS as exc:
        return _unreachable(request, exc, queue)
    if not found:
        return done(
            request, f"Run {run_id} is no longer queued.", "taskkit_queue", queue, error=True
        )
    return done(request, f"Deleted run {run_id}.", "taskkit_queue", queue)


def _what(name: str, payload: dict[str, Any] | None) -> str:
    return f"{name} messages" + (f" with payload {short(payload)}" if payload is not None else "")


@manager
def delete_matching(request: HttpRequest, site: AdminSite, queue: str) -> HttpResponse:
    name, text = request.POST.get("name", ""), request.POST.get("payload", "")
    try:
        payload = parse_payload(text) if text.strip() else None
        listable = queues.listable()
        count = queues.delete(queue, name, payload, dry_run=True)
    except (ValueError, TaskNotFound, queues.UnknownQueue) as exc:
        return done(request, str(exc), "taskkit_queue", queue, error=True)
    except BROKER_ERRORS as exc:
        return _unreachable(request, exc, queue)
    what = _what(name, payload)
    question = (
        f"Delete {count} {what} from queue {queue}?"
        if listable
        else f"Cancel every {what} queued in {queue} so far? Workers will skip them."
    )
    back = reverse("admin:taskkit_queue", args=[queue])
    if (asking := confirm(request, site, question, back)) is not None:
        return asking
    removed = queues.delete(queue, name, payload)
    if not listable:
        return done(request, f"Workers will skip the {what} queued so far.", "taskkit_queue", queue)
    return done(request, f"Deleted {removed} {what}.", "taskkit_queue", queue)


@manager
def purge(request: HttpRequest, site: AdminSite, queue: str) -> HttpResponse:
    try:
        count = queues.purge(queue, dry_run=True)
    except queues.UnknownQueue as exc:
        raise Http404(str(exc)) from None
    except BROKER_ERRORS as exc:
        return _unreachable(request, exc, queue)
    question = f"Purge queue {queue}? Its {count} waiting messages will be deleted."
    back = reverse("admin:taskkit_queue", args=[queue])
    if (asking := confirm(request, site, question, back)) is not None:
        return asking
    removed = queues.purge(queue)
    return done(request, f"Purged {removed} messages from {queue}.", "taskkit_queue", queue)
