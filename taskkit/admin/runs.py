"""Runs and failures in the admin: filter, read payload, result, error and traceback; retry, remove.

Read-only but for taskkit's own actions, which managers only get: retry a
failed run (:func:`taskkit.retry_failed`), remove finished runs, and stop a
running one (:func:`taskkit.queues.cancel_running`). While a run
runs, the list and the run's page update in place (``static/taskkit/live.js``),
keeping ticked rows, scroll and open forms.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from .. import times
from ..exceptions import BrokerUnavailable, RunNotFound, TaskNotFound
from ..models import FINISHED, RunStatus, TaskRun, TaskRunQuerySet, storable
from ..permissions import can_manage
from ..queues import cancel_running, retry_failed
from ..registry import all_tasks
from .access import OperatorsOnly
from .pages.common import BROKER_ERRORS, broker_problem, confirm

#: Seconds between reloads of the list while a run is running.
REFRESH = 3
#: The short id the list shows, or a longer prefix of the hex of a run id.
SHORT_ID = re.compile(r"[0-9a-fA-F]{4,32}")


class TaskNameFilter(admin.SimpleListFilter):
    title = "task"
    parameter_name = "name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(all_tasks())]

    def queryset(self, request: HttpRequest, queryset: QuerySet[TaskRun]) -> QuerySet[TaskRun]:
        return queryset.filter(name=self.value()) if self.value() else queryset


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start is not None and end is not None else None


def _moment(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _retry(request: HttpRequest, runs: QuerySet[TaskRun]) -> None:
    """Re-queue the failed ``runs``; say how many, and why others were left."""
    failed = [run for run in runs if run.status == RunStatus.FAILED]
    retried = 0
    for run in failed:
        try:
            retried += len(retry_failed(run.pk))
        except (TaskNotFound, BrokerUnavailable) as exc:
            messages.error(request, f"{run.name} {run.pk}: {exc}")
    if retried:
        messages.success(request, f"Queued {retried} failed run(s) again.")
    if skipped := len(runs) - len(failed):
        messages.warning(request, f"Left {skipped} run(s) that had not failed.")


def _remove(request: HttpRequest, runs: QuerySet[TaskRun]) -> None:
    """Delete the finished ``runs``; a queued, delayed or running run is left alone."""
    finished = cast(TaskRunQuerySet, runs).finished()  # the admin's queryset is the manager's
    kept = runs.count() - finished.count()
    removed, _ = finished.delete()
    messages.success(request, f"Removed {removed} finished run(s).")
    if kept:
        messages.warning(request, f"Left {kept} run(s) that have not finished.")


@admin.register(TaskRun)
class TaskRunAdmin(OperatorsOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "short_id",
        "name",
        "status",
        "queue",
        "attempt",
        "queued_at",
        "wait",
        "duration",
        "progress",
        "worker",
        "short_error",
    )
    list_filter = ("status", TaskNameFilter)
    search_fields = ("name",)  # the search box; get_search_results says what it finds
    ordering = ("-created_at",)
    actions = ("retry_selected", "remove_selected")
    change_list_template = "admin/taskkit/taskrun/change_list.html"
    change_form_template = "admin/taskkit/taskrun/change_form.html"
    fields = (
        "id",
        "name",
        "status",
        "queue",
        "attempt",
        "restarts",
        "source",
        "worker",
        "queued_at",
        "due_at",
        "started",
        "finished",
        "wait",
        "duration",
        "progress",
        "payload_json",
        "result_json",
        "error_text",
        "traceback_text",
        "attempts_table",
    )
    readonly_fields = fields

    # -- who may do what --------------------------------------------------------------------

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return can_manage(request.user)

    # -- columns and fields -----------------------------------------------------------------

    @admin.display(description="run", ordering="id")
    def short_id(self, run: TaskRun) -> str:
        return str(run.pk)[:8]

    @admin.display(description="queued at", ordering="created_at")
    def queued_at(self, run: TaskRun) -> str:
        return times.shown(run.created_at)

    @admin.display(description="due at")
    def due_at(self, run: TaskRun) -> str:
        return times.shown(run.scheduled_for)

    @admin.display(description="started at")
    def started(self, run: TaskRun) -> str:
        return times.shown(run.started_at)

    @admin.display(description="finished at", ordering="finished_at")
    def finished(self, run: TaskRun) -> str:
        return times.shown(run.finished_at)

    @admin.display(description="wait")
    def wait(self, run: TaskRun) -> str:
        """From queued (or due, for a delayed run) to started."""
        since = run.scheduled_for or run.created_at
        return times.span(_seconds(since, run.started_at))

    @admin.display(description="duration")
    def duration(self, run: TaskRun) -> str:
        return times.span(_seconds(run.started_at, run.finished_at))

    @admin.display(description="progress")
    def progress(self, run: TaskRun) -> str:
        if not run.progress_total:
            return "-"
        return format_html(
            '<progress value="{}" max="{}"></progress> {}/{}',
            run.progress_done or 0,
            run.progress_total,
            run.progress_done or 0,
            run.progress_total,
        )

    @admin.display(description="error")
    def short_error(self, run: TaskRun) -> str:
        first = run.error.splitlines()[0] if run.error else ""
        return first if len(first) <= 80 else first[:79] + "…"

    @admin.display(description="payload")
    def payload_json(self, run: TaskRun) -> str:
        return format_html("<pre>{}</pre>", _pretty(run.payload))

    @admin.display(description="result")
    def result_json(self, run: TaskRun) -> str:
        return format_html("<pre>{}</pre>", _pretty(run.result)) if run.result is not None else "-"

    @admin.display(description="error")
    def error_text(self, run: TaskRun) -> str:
        return format_html("<pre>{}</pre>", run.error) if run.error else "-"

    @admin.display(description="traceback")
    def traceback_text(self, run: TaskRun) -> str:
        return format_html("<pre>{}</pre>", run.traceback) if run.traceback else "-"

    @admin.display(description="failed attempts")
    def attempts_table(self, run: TaskRun) -> str:
        """One row per failed attempt: when it ended, with what; oddly shaped entries as JSON."""
        entries = [entry for entry in run.history if isinstance(entry, dict)]
        if not run.history:
            return "-"
        if len(entries) != len(run.history):
            return format_html("<pre>{}</pre>", _pretty(run.history))
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    entry.get("attempt", "?"),
                    times.shown(_moment(entry.get("finished_at"))),
                    entry.get("exception", ""),
                    entry.get("error", ""),
                )
                for entry in entries
            ),
        )
        return format_html(
            '<table class="taskkit-attempts"><thead><tr><th>attempt</th><th>failed at</th>'
            "<th>exception</th><th>error</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    # -- search by run id (or the short id the list shows), name, error text, payload ---------

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        """Django's list; a filter or search holding text no database stores (NUL) is an
        invalid lookup (Django's own page says so), where PostgreSQL would refuse the query."""
        if any(storable(value) != value for _, values in request.GET.lists() for value in values):
            raise IncorrectLookupParameters
        return super().get_changelist_instance(request)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[TaskRun], search_term: str
    ) -> tuple[QuerySet[TaskRun], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            pass
        matches = Q(name__icontains=term) | Q(error__icontains=term)
        matches |= Q(payload_text__icontains=term)
        if SHORT_ID.fullmatch(term):
            matches |= Q(id__startswith=term.lower())
        return queryset.alias(payload_text=Cast("payload", TextField())).filter(matches), False

    # -- actions: bulk on the list, one run on its page -------------------------------------

    def response_action(
        self, request: HttpRequest, queryset: QuerySet[Any], *args: Any, **kwargs: Any
    ) -> HttpResponse | None:
        """Django's actions, but a selection that is no run id (a form made by hand) is said
        so: Django filters by the ids as sent, and a UUID column raises on any other text."""
        for selected in request.POST.getlist(ACTION_CHECKBOX_NAME):
            try:
                uuid.UUID(selected)
            except ValueError:
                self.message_user(request, f"{selected!r} is no run id.", messages.ERROR)
                return None  # Django's list then redirects to itself, as for a failed action
        return super().response_action(request, queryset, *args, **kwargs)

    @admin.action(description="Retry selected failed runs", permissions=["manage"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[TaskRun]) -> None:
        _retry(request, queryset)

    @admin.action(description="Remove selected finished runs", permissions=["manage"])
    def remove_selected(self, request: HttpRequest, queryset: QuerySet[TaskRun]) -> None:
        _remove(request, queryset)

    def _one(self, request: HttpRequest, run_id: str, act: Any, to: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not can_manage(request.user):
            raise PermissionDenied
        act(request, TaskRun.objects.filter(pk=run_id))
        return HttpResponseRedirect(to)

    def retry_view(self, request: HttpRequest, run_id: str) -> HttpResponse:
        to = reverse("admin:taskkit_taskrun_change", args=[run_id])
        return self._one(request, run_id, _retry, to)

    def remove_view(self, request: HttpRequest, run_id: str) -> HttpResponse:
        to = reverse("admin:taskkit_taskrun_changelist")
        return self._one(request, run_id, _remove, to)

    def stop_view(self, request: HttpRequest, run_id: str) -> HttpResponse:
        """Stop a running run (:func:`taskkit.queues.cancel_running`), once confirmed."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not can_manage(request.user):
            raise PermissionDenied
        to = reverse("admin:taskkit_taskrun_change", args=[run_id])
        question = f"Stop run {run_id}? Its worker kills the process running it."
        if (asking := confirm(request, self.admin_site, question, to)) is not None:
            return asking
        try:
            stopped = cancel_running(run_id)
        except RunNotFound as exc:
            messages.error(request, str(exc))
        except BROKER_ERRORS as exc:
            messages.error(request, broker_problem(exc))
        else:
            if stopped:
                messages.success(request, f"Stopped run {run_id}: it is cancelled.")
            else:
                messages.warning(
                    request,
                    f"Asked its worker to stop run {run_id}, but it is still running: only a "
                    "process pool (prefork) can stop one run; a thread pool cannot.",
                )
        return HttpResponseRedirect(to)

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<uuid:run_id>/stop/",
                self.admin_site.admin_view(self.stop_view),
                name="taskkit_taskrun_stop",
            ),
            path(
                "<uuid:run_id>/retry/",
                self.admin_site.admin_view(self.retry_view),
                name="taskkit_taskrun_retry",
            ),
            path(
                "<uuid:run_id>/remove/",
                self.admin_site.admin_view(self.remove_view),
                name="taskkit_taskrun_remove",
            ),
        ]
        return own + super().get_urls()

    # -- the list and a run's page follow runs in place while something runs ----------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        if isinstance(response, TemplateResponse) and "cl" in (response.context_data or {}):
            shown = response.context_data["cl"].result_list  # type: ignore[index]
            running = any(run.status == RunStatus.RUNNING for run in shown)
            response.context_data["refresh"] = REFRESH if running else None  # type: ignore[index]
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        run = TaskRun.objects.filter(pk=object_id).only("status").first()
        following = run is not None and run.status not in FINISHED
        extra = {
            **(extra_context or {}),
            "can_manage": can_manage(request.user),
            "refresh": REFRESH if following else None,
        }
        return super().change_view(request, object_id, form_url, extra)
