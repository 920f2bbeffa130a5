"""Runs and failures in the admin: filter, read payload, result, error and traceback; retry, remove.

Read-only but for taskkit's own actions, which managers only get: retry a
failed run (:func:`taskkit.retry_failed`) and remove finished runs. The list
reloads itself while a run is running, so progress bars move without JavaScript.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from ..exceptions import BrokerUnavailable, TaskNotFound
from ..models import RunStatus, TaskRun, TaskRunQuerySet
from ..permissions import can_manage
from ..queues import retry_failed
from ..registry import all_tasks
from .access import OperatorsOnly

#: Seconds between reloads of the list while a run is running.
REFRESH = 3


class TaskNameFilter(admin.SimpleListFilter):
    title = "task"
    parameter_name = "name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(all_tasks())]

    def queryset(self, request: HttpRequest, queryset: QuerySet[TaskRun]) -> QuerySet[TaskRun]:
        return queryset.filter(name=self.value()) if self.value() else queryset


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
        "created_at",
        "finished_at",
        "progress",
        "worker",
        "short_error",
    )
    list_filter = ("status", TaskNameFilter)
    search_fields = ("name",)
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
        "source",
        "worker",
        "created_at",
        "scheduled_for",
        "started_at",
        "finished_at",
        "progress",
        "payload_json",
        "result_json",
        "error_text",
        "traceback_text",
        "history_json",
    )
    readonly_fields = fields

    # -- who may do what --------------------------------------------------------------------

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return can_manage(request.user)

    # -- columns and fields -----------------------------------------------------------------

    @admin.display(description="run", ordering="id")
    def short_id(self, run: TaskRun) -> str:
        return str(run.pk)[:8]

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
    def history_json(self, run: TaskRun) -> str:
        return format_html("<pre>{}</pre>", _pretty(run.history)) if run.history else "-"

    # -- search by run id, as well as by name -----------------------------------------------

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[TaskRun], search_term: str
    ) -> tuple[QuerySet[TaskRun], bool]:
        try:
            return queryset.filter(pk=uuid.UUID(search_term.strip())), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    # -- actions: bulk on the list, one run on its page -------------------------------------

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

    def get_urls(self) -> list[URLPattern]:
        own = [
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

    # -- the list reloads itself while something runs ---------------------------------------

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
        extra = {**(extra_context or {}), "can_manage": can_manage(request.user)}
        return super().change_view(request, object_id, form_url, extra)
