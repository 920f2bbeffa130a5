"""The endpoints: ``GET <mount>/`` lists the tasks, ``POST <mount>/<name>`` runs one,
``GET <mount>/health`` checks taskkit's dependencies, ``GET <mount>/metrics`` serves
Prometheus.

Checks come in this order: who calls (401, 403), which task (404), which method
(405: a GET on a task runs nothing, so a link or an image tag cannot run one).
Errors are JSON ``{"error": ...}`` with the status the exception carries.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .. import queues
from ..bridge import enqueue
from ..conf import settings
from ..definition import Source
from ..definition.schedules import describe_cron, describe_every
from ..exceptions import BadRequest, TaskkitError, TaskNotFound
from ..registry import all_tasks, get_task
from ..runner import run_task
from ..scheduling.periodic import wanted
from .auth import refused
from .payloads import merged, read_body, wants_enqueue
from .responses import error, json_response

logger = logging.getLogger("taskkit.api")


def listing() -> dict[str, Any]:
    """Every task with its description, and the schedules: by cron, then by frequency."""
    by_cron: dict[str, set[str]] = {}
    by_frequency: dict[int, set[str]] = {}
    for periodic in wanted():
        if periodic.cron is not None:
            by_cron.setdefault(periodic.cron, set()).add(periodic.task)
        elif periodic.every is not None:  # whole seconds: the task option allows no other
            by_frequency.setdefault(int(periodic.every.total_seconds()), set()).add(periodic.task)
    return {
        "tasks": {
            name: {"description": task.meta.description} for name, task in all_tasks().items()
        },
        "scheduledTasks": [
            *(
                {"cron": cron, "description": describe_cron(cron), "tasks": sorted(names)}
                for cron, names in by_cron.items()
            ),
            *(
                {
                    "frequency": seconds,
                    "description": describe_every(seconds),
                    "tasks": sorted(names),
                }
                for seconds, names in sorted(by_frequency.items())
            ),
        ],
    }


@csrf_exempt  # checked in auth.refused, for sessions only
def index(request: HttpRequest) -> HttpResponse:
    if (denied := refused(request, manage=False)) is not None:
        return denied
    if request.method not in {"GET", "HEAD"}:
        return error(405, "Use GET.", {"Allow": "GET, HEAD"})
    return json_response(listing())


def _run(name: str, request: HttpRequest) -> HttpResponse:
    """Run or queue the task, mapping every failure to its status code."""
    try:
        payload = merged(request)
        if wants_enqueue(request):
            handle = enqueue(name, payload)
            queued: dict[str, Any] = {"id": handle.id, "status": "queued"}
            if handle.deduplicated:  # a queue_lock task: the twin already queued
                queued["deduplicated"] = True
            return json_response(queued, 202)
        result = run_task(name, payload, context={"source": Source.HTTP})
    except BadRequest as exc:
        return error(400, str(exc))
    except TaskkitError as exc:
        if exc.status_code >= 500:
            logger.error("Task %r over the HTTP API: %s", name, exc, exc_info=True)
        return error(exc.status_code, str(exc))
    except Exception as exc:  # the task's own failure: its message, never its traceback
        logger.exception("Task %r raised over the HTTP API", name)
        return error(500, f"{type(exc).__name__}: {exc}")
    return json_response({"result": result})


@csrf_exempt  # checked in auth.refused, for sessions only
@transaction.non_atomic_requests  # the task commits as it would from runtask; see the how-to
def task(request: HttpRequest, name: str) -> HttpResponse:
    if (denied := refused(request, manage=False)) is not None:
        return denied
    try:
        get_task(name)
    except TaskNotFound as exc:
        return error(404, str(exc))
    if request.method != "POST":
        return error(405, "Use POST to run a task.", {"Allow": "POST"})
    try:
        read_body(request)  # before the CSRF check, which may consume a multipart body
    except BadRequest as exc:
        return error(400, str(exc))
    if (denied := refused(request, manage=True)) is not None:
        return denied
    return _run(name, request)


#: The health check's path; a task of this name is still run by a POST there.
HEALTH = "health"


@csrf_exempt  # checked in auth.refused, for sessions only
@transaction.non_atomic_requests  # the database check must not need the database first
def health(request: HttpRequest) -> HttpResponse:
    """``?check=NAME`` (again for more; none: all): 200 when every check passes, else 503.

    With ``HEALTH_PUBLIC``, a caller the API would refuse gets the outcomes
    without their details: a probe needs no more, and the details name hosts.
    """
    answer, trusted = _read_only(request, HEALTH, public=settings.HEALTH_PUBLIC)
    if answer is not None:
        return answer
    try:
        report = queues.health(request.GET.getlist("check") or None)
    except ValueError as exc:
        return error(400, str(exc))
    return json_response(report.as_json(details=trusted), 200 if report.ok else 503)


def _read_only(
    request: HttpRequest, name: str, *, public: bool
) -> tuple[HttpResponse | None, bool]:
    """What a GET-only view at ``name`` answers before its own work (a POST runs the task so
    named, a refusal, a 405), and whether the API itself lets the caller in (``public``
    lets everyone else in too)."""
    if request.method not in {"GET", "HEAD"} and name in all_tasks():
        return task(request, name), True
    denied = refused(request, manage=False)
    if denied is not None and not public:
        return denied, False
    if request.method not in {"GET", "HEAD"}:
        return error(405, "Use GET.", {"Allow": "GET, HEAD"}), False
    return None, denied is None


#: The metrics' path; a task of this name is still run by a POST there.
METRICS = "metrics"


@csrf_exempt  # checked in auth.refused, for sessions only
@transaction.non_atomic_requests  # a failing database leaves its metrics out, not the others
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format; 501 without ``prometheus_client``.

    With ``METRICS_PUBLIC``, a caller the API would refuse gets them too: a
    scraper may hold no token.
    """
    answer, _ = _read_only(request, METRICS, public=settings.METRICS_PUBLIC)
    if answer is not None:
        return answer
    try:
        from ..queues.metrics import CONTENT_TYPE, exposition  # an optional dependency
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "prometheus_client":
            raise
        return error(501, "The metrics need prometheus_client: install django-taskkit[metrics].")
    response = HttpResponse(exposition(), content_type=CONTENT_TYPE)
    response["X-Content-Type-Options"] = "nosniff"  # text, as every answer of the API is data
    return response
