"""Who may call the API: a bearer token from the settings, or a staff session.

A session POST must carry its CSRF token, as any form would; a bearer token is
not sent by browsers on their own, so it needs none. Tokens are compared in
constant time.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from ..conf import settings
from ..permissions import can_manage, can_view
from .responses import error

BEARER = "Bearer "


def _csrf_passes(request: HttpRequest) -> bool:
    """Whether ``request`` passes Django's CSRF check (the view itself is exempt)."""
    check = CsrfViewMiddleware(lambda _: HttpResponse())
    return check.process_view(request, None, (), {}) is None  # type: ignore[arg-type]


def refused(request: HttpRequest, *, manage: bool) -> HttpResponse | None:
    """The response refusing ``request`` (401, 403), or ``None`` when it may go on.

    ``manage``: the request changes something (runs or queues a task).
    """
    header = request.headers.get("Authorization", "")
    if header.startswith(BEARER):
        token = settings.API_TOKEN
        given = header[len(BEARER) :].strip()
        if token and hmac.compare_digest(given.encode(), token.encode()):
            return None
        return error(401, "Invalid bearer token.", WWW_Authenticate='Bearer error="invalid_token"')
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return error(401, "Log in as staff or send a bearer token.", WWW_Authenticate="Bearer")
    if not (can_manage(user) if manage else can_view(user)):
        needed = "taskkit.manage_tasks" if manage else "taskkit.view_dashboard"
        return error(403, f"This needs the permission {needed}.")
    if manage and not _csrf_passes(request):
        return error(403, "CSRF check failed: send the CSRF token with a session POST.")
    return None
