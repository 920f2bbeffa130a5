"""Every registered task, and a form that enqueues one: long work never runs in a request."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from ...bridge import enqueue
from ...definition import parse_payload
from ...definition.schedules import describe_schedule
from ...exceptions import InvalidPayload, TaskNotFound
from ...models import TaskRun
from ...permissions import can_manage
from ...registry import all_tasks, get_task
from ...scheduling.periodic import wanted
from .common import BROKER_ERRORS, broker_problem, done, page, viewer


class EnqueueForm(forms.Form):
    payload = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80, "spellcheck": "false"}),
        required=False,
        help_text="A JSON object; empty for none.",
    )

    def clean_payload(self) -> dict[str, Any]:
        try:
            return parse_payload(self.cleaned_data["payload"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


def _schedules() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for periodic in wanted():
        when = describe_schedule(periodic.cron, periodic.every)
        found.setdefault(periodic.task, []).append(when)
    return found


def _last_status(name: str) -> str:
    last = TaskRun.objects.filter(name=name).order_by("-created_at").values_list("status")[:1]
    return last[0][0] if last else ""


@viewer
def task_list(request: HttpRequest, site: AdminSite) -> HttpResponse:
    schedules = _schedules()
    rows = [
        {
            "name": task.name,
            "description": task.meta.description,
            "queue": task.queue,
            "schedule": ", ".join(schedules.get(task.name, [])),
            "last_status": _last_status(task.name),
        }
        for task in sorted(all_tasks().values(), key=lambda task: task.name)
    ]
    return page(request, site, "tasks.html", "Tasks", tasks=rows)


@viewer
def enqueue_task(request: HttpRequest, site: AdminSite, name: str) -> HttpResponse:
    """GET: the form. POST (managers only): validate the payload, enqueue, show the run."""
    try:
        task = get_task(name)
    except TaskNotFound as exc:
        return done(request, str(exc), "taskkit_tasks", error=True)
    form = EnqueueForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if not can_manage(request.user):
            raise PermissionDenied
        if form.is_valid():
            try:
                handle = enqueue(name, form.cleaned_data["payload"])
            except InvalidPayload as exc:
                form.add_error("payload", str(exc))
            except BROKER_ERRORS as exc:
                form.add_error(None, broker_problem(exc))
            else:
                text = f"Queued {name} as run {handle.id}."
                return done(request, text, "taskkit_run", handle.id)
    return page(request, site, "enqueue.html", f"Enqueue {name}", task=task, form=form)
