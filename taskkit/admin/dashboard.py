"""The "Tasks" section of the admin: the dashboard and the pages it links to.

The unmanaged ``Dashboard`` model puts an entry in the admin index; its
changelist is the dashboard, and its URLs carry the other pages, each wrapped
in ``admin_view`` (login, staff, CSRF) and gated by taskkit's permissions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, update_wrapper

from django.contrib import admin
from django.http import HttpResponse
from django.urls import URLPattern, path

from ..models import Dashboard
from .access import OperatorsOnly
from .pages import delayed, overview, periodic, queue, run, tasks


@admin.register(Dashboard)
class DashboardAdmin(OperatorsOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    def _view(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        bound = partial(view, site=self.admin_site)
        return self.admin_site.admin_view(update_wrapper(bound, view))

    def get_urls(self) -> list[URLPattern]:
        pages: list[tuple[str, Callable[..., HttpResponse], str]] = [
            ("", overview.dashboard, "taskkit_dashboard_changelist"),
            ("tasks/", tasks.task_list, "taskkit_tasks"),
            ("tasks/<str:name>/enqueue/", tasks.enqueue_task, "taskkit_task_enqueue"),
            ("queues/<str:queue>/", queue.browse, "taskkit_queue"),
            ("queues/<str:queue>/delete-run/", queue.delete_run, "taskkit_queue_delete_run"),
            ("queues/<str:queue>/delete/", queue.delete_matching, "taskkit_queue_delete"),
            ("queues/<str:queue>/purge/", queue.purge, "taskkit_queue_purge"),
            ("runs/<uuid:run_id>/", run.run, "taskkit_run"),
            ("delayed/", delayed.delayed, "taskkit_delayed"),
            ("delayed/<uuid:run_id>/delete/", delayed.delete, "taskkit_delayed_delete"),
            ("delayed/<uuid:run_id>/run/", delayed.run_now, "taskkit_delayed_run"),
            ("periodic/", periodic.periodic, "taskkit_periodic"),
            ("periodic/<int:pk>/toggle/", periodic.toggle, "taskkit_periodic_toggle"),
            ("periodic/<str:name>/run/", periodic.run_now, "taskkit_periodic_run"),
        ]
        return [path(route, self._view(view), name=name) for route, view, name in pages]
