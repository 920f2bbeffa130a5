"""Delayed runs (``enqueue_in``, ``enqueue_at``, waiting retries): delete one, or run it now."""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from ... import queues
from ...models import TaskRun
from .common import BROKER_ERRORS, broker_problem, confirm, done, manager, page, short, viewer

PER_PAGE = 50


@viewer
def delayed(request: HttpRequest, site: AdminSite) -> HttpResponse:
    rows = TaskRun.objects.scheduled().order_by("scheduled_for", "pk")
    name = request.GET.get("name", "")
    if name:
        rows = rows.named(name)
    current = Paginator(rows, PER_PAGE).get_page(request.GET.get("page"))
    return page(
        request,
        site,
        "delayed.html",
        "Delayed runs",
        current=current,
        runs=[{"run": run, "payload": short(run.payload)} for run in current],
        name=name,
    )


@manager
def delete(request: HttpRequest, site: AdminSite, run_id: str) -> HttpResponse:
    run = TaskRun.objects.scheduled().filter(pk=run_id).first()
    if run is None:
        return done(request, f"Run {run_id} is no longer delayed.", "taskkit_delayed", error=True)
    due = f"{run.scheduled_for:%Y-%m-%d %H:%M:%S %Z}"
    question = f"Delete the delayed run {run.pk} of {run.name}, due {due}?"
    if (asking := confirm(request, site, question, reverse("admin:taskkit_delayed"))) is not None:
        return asking
    queues.delete_run(run.pk)
    return done(request, f"Deleted the delayed run {run.pk}.", "taskkit_delayed")


@manager
def run_now(request: HttpRequest, site: AdminSite, run_id: str) -> HttpResponse:
    try:
        sent = queues.run_delayed_now(run_id)
    except BROKER_ERRORS as exc:
        return done(request, broker_problem(exc), "taskkit_delayed", error=True)
    if not sent:
        return done(request, f"Run {run_id} is no longer delayed.", "taskkit_delayed", error=True)
    return done(request, f"Run {run_id} was queued now.", "taskkit_run", run_id)
