"""One run as it goes: where an enqueue from the admin lands, to watch the run finish.

A run recorded with ``track="runs"`` has no row until a worker starts it, so
the page also stands for runs still waiting in their queue.
"""

from __future__ import annotations

import json

from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse

from ...models import TaskRun
from .common import page, viewer

#: Seconds between reloads while the run is not finished.
REFRESH = 2


@viewer
def run(request: HttpRequest, site: AdminSite, run_id: str) -> HttpResponse:
    row = TaskRun.objects.filter(pk=run_id).first()
    result = json.dumps(row.result, indent=2, ensure_ascii=False) if row and row.result else ""
    return page(
        request,
        site,
        "run.html",
        f"Run {run_id}",
        run_id=run_id,
        run=row,
        result=result,
        refresh=REFRESH if row is None or not row.finished else None,
    )
