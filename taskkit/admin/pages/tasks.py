"""Every registered task, and a form that enqueues one: long work never runs in a request."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from ... import bridge
from ...definition import Task, parse_payload
from ...definition.names import validate_queue_name
from ...definition.schedules import describe_schedule
from ...exceptions import InvalidPayload, TaskNotFound
from ...models import TaskRun
from ...permissions import can_manage
from ...registry import all_tasks, get_task
from ...scheduling.periodic import wanted
from .common import BROKER_ERRORS, broker_problem, done, page, viewer


class EnqueueForm(forms.Form):
    """What ``runtask --enqueue`` takes: a payload, and optionally a queue, a time, a priority."""

    payload = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80, "spellcheck": "false"}),
        required=False,
        help_text="A JSON object; empty for none.",
    )
    queue = forms.CharField(
        required=False, max_length=200, help_text="Empty for the task's own queue."
    )
    delay = forms.FloatField(
        required=False,
        min_value=0,
        label="Run in (seconds)",
        help_text="Empty to run now. A delayed run waits in Delayed until it is due.",
    )
    at = forms.DateTimeField(
        required=False,
        label="Or run at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}),
        help_text="In the project's time zone.",
    )
    priority = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=255,
        help_text="A Celery message priority, in the broker's own order; empty for none.",
    )

    def clean_payload(self) -> dict[str, Any]:
        try:
            return parse_payload(self.cleaned_data["payload"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_queue(self) -> str | None:
        queue = self.cleaned_data["queue"].strip()
        try:
            return validate_queue_name(queue) if queue else None
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        """The time to run at, ``when``: ``at``, or now plus ``delay`` (within ``enqueue_in``'s
        bounds), or ``None`` for now."""
        cleaned = super().clean() or {}
        delay, cleaned["when"] = cleaned.get("delay"), cleaned.get("at")
        if delay is not None and cleaned["when"] is not None:
            raise forms.ValidationError("Give a delay or a time to run at, not both.")
        if delay is not None:
            try:
                cleaned["when"] = bridge.delay_to_datetime(delay)
            except ValueError as exc:
                self.add_error("delay", str(exc))
        return cleaned

    def send(self, task: Task) -> bridge.RunHandle:
        """Queue the run the form describes (valid forms only)."""
        data = self.cleaned_data
        when = data["when"]
        if when is not None:
            return bridge.enqueue_task_at(
                task, when, data["payload"], data["queue"], priority=data["priority"]
            )
        return bridge.enqueue_task(task, data["payload"], data["queue"], priority=data["priority"])


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
                handle = form.send(task)
            except InvalidPayload as exc:
                form.add_error("payload", str(exc))
            except BROKER_ERRORS as exc:
                form.add_error(None, broker_problem(exc))
            else:
                text = f"Queued {name} as run {handle.id}."
                return done(request, text, "taskkit_run", handle.id)
    return page(request, site, "enqueue.html", f"Enqueue {name}", task=task, form=form)
