"""What every page shares: the permission gates, the admin's context, confirmations."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from kombu.exceptions import OperationalError

from ...exceptions import BrokerUnavailable
from ...permissions import can_manage, can_view
from ...queues import QueueNotListable

#: What a page cannot do without the broker; shown as an error instead of a 500.
BROKER_ERRORS = (BrokerUnavailable, OperationalError, ConnectionError, QueueNotListable)
#: Longest payload shown in a table; the rest is cut off with an ellipsis.
SHORT = 200

View = Callable[..., HttpResponse]


def viewer(view: View) -> View:
    """Only for staff who may see the dashboard."""

    @wraps(view)
    def gated(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_view(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return gated


def manager(view: View) -> View:
    """Only a POST (with its CSRF token, checked by the middleware), only by a manager."""

    @wraps(view)
    def gated(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not can_manage(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return gated


def page(
    request: HttpRequest, site: AdminSite, template: str, title: str, **context: Any
) -> TemplateResponse:
    """Render ``template`` inside the admin's frame, with what the navigation needs."""
    return TemplateResponse(
        request,
        f"taskkit/admin/{template}",
        {
            **site.each_context(request),
            "title": title,
            "can_manage": can_manage(request.user),
            **context,
        },
    )


def confirm(
    request: HttpRequest, site: AdminSite, question: str, back: str
) -> TemplateResponse | None:
    """The confirmation page of a destructive POST, or ``None`` once it is confirmed.

    The page posts the same fields again, with ``confirm=yes``; "No" goes ``back``.
    """
    if request.POST.get("confirm") == "yes":
        return None
    skip = {"csrfmiddlewaretoken", "confirm"}
    fields = [(key, value) for key, value in request.POST.items() if key not in skip]
    return page(
        request, site, "confirm.html", "Are you sure?", question=question, fields=fields, back=back
    )


def broker_problem(exc: Exception) -> str:
    """What to tell the operator about one of :data:`BROKER_ERRORS`."""
    if isinstance(exc, QueueNotListable):
        return str(exc)
    return f"The broker cannot be reached: {exc}"


def short(value: Any, limit: int = SHORT) -> str:
    """``value`` as compact JSON, cut after ``limit`` characters."""
    return cut(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str), limit)


def cut(text: str, limit: int = SHORT) -> str:
    """``text`` cut after ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def done(request: HttpRequest, text: str, to: str, *args: Any, error: bool = False) -> HttpResponse:
    """Report ``text`` (as an error with ``error``) and go to the admin page named ``to``."""
    (messages.error if error else messages.success)(request, text)
    return HttpResponseRedirect(reverse(f"admin:{to}", args=args))
