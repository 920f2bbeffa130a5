"""The two endpoints: ``GET <mount>/`` lists the tasks, ``POST <mount>/<name>`` runs one.

A GET on a task is refused (405): nothing runs from a link or an image tag.
Errors are JSON ``{"error": ...}`` with the status the exception carries.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..bridge import enqueue
from ..definition import Source
from ..exceptions import TaskkitError, TaskNotFound
from ..registry import all_tasks, get_task
from ..runner import run_task
from ..scheduling.periodic import wanted
from .auth import refused
from .payloads import BadRequest, merged
from .responses import error, json_response

TRUE = frozenset({"1", "true", "yes", "on"})


def listing() -> dict[str, Any]:
    """Every task with its description, and the schedules grouped by cron or frequency."""
    schedules: dict[tuple[str, Any], list[str]] = {}
    for periodic in wanted():
        key = ("cron", periodic.cron) if periodic.cron else ("frequency", periodic.every)
        schedules.setdefault(key, []).append(periodic.task)
    return {
        "tasks": {
            name: {"description": task.meta.description}
            for name, task in sorted(all_tasks().items())
        },
        "scheduledTasks": [
            {kind: value if kind == "cron" else int(value.total_seconds()), "tasks": sorted(names)}
            for (kind, value), names in schedules.items()
        ],
    }


@csrf_exempt  # checked in auth.refused, for sessions only
def index(request: HttpRequest) -> HttpResponse:
    if request.method not in {"GET", "HEAD"}:
        return error(405, "Use GET.", Allow="GET, HEAD")
    if (denied := refused(request, manage=False)) is not None:
        return denied
    return json_response(listing())


@csrf_exempt  # checked in auth.refused, for sessions only
def task(request: HttpRequest, name: str) -> HttpResponse:
    if (denied := refused(request, manage=False)) is not None:
        return denied
    try:
        get_task(name)
    except TaskNotFound as exc:
        return error(404, str(exc))
    if request.method != "POST":
        return error(405, "Use POST to run a task.", Allow="POST")
    if (denied := refused(request, manage=True)) is not None:
        return denied
    try:
        payload = merged(request)
        if request.GET.get("enqueue", "").lower() in TRUE:
            handle = enqueue(name, payload)
            return json_response({"id": handle.id, "status": "queued"}, 202)
        result = run_task(name, payload, context={"source": Source.HTTP})
    except BadRequest as exc:
        return error(400, str(exc))
    except TaskkitError as exc:
        return error(exc.status_code, str(exc))
    except Exception as exc:  # the task's own failure: its message, never its traceback
        return error(500, f"{type(exc).__name__}: {exc}")
    return json_response({"result": result})
