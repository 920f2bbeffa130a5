"""Who may call the API: a bearer token from the settings, or a staff session.

A session POST must carry its CSRF token, as any form would. A bearer token
needs none: browsers never send it on their own, so a forged cross-site request
cannot carry it. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from ..conf import settings
from ..permissions import MANAGE, VIEW, can_manage, can_view
from .responses import error


def bearer_token(request: HttpRequest) -> str | None:
    """The credentials of an ``Authorization: Bearer …`` header (the scheme in any case)."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _csrf_passes(request: HttpRequest) -> bool:
    """Whether ``request`` passes Django's CSRF check (the views themselves are exempt)."""
    check = CsrfViewMiddleware(lambda _: HttpResponse())
    return check.process_view(request, None, (), {}) is None  # type: ignore[arg-type]


def refused(request: HttpRequest, *, manage: bool) -> HttpResponse | None:
    """The response refusing ``request`` (401, 403), or ``None`` when it may go on.

    ``manage``: the request changes something (runs or queues a task).
    """
    given = bearer_token(request)
    if given is not None:
        token = settings.API_TOKEN
        if token and hmac.compare_digest(given.encode(), token.encode()):
            return None
        return error(
            401, "Invalid bearer token.", {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return error(401, "Log in as staff or send a bearer token.", {"WWW-Authenticate": "Bearer"})
    if not (can_manage(user) if manage else can_view(user)):
        return error(403, f"This needs the permission {MANAGE if manage else VIEW}.")
    if manage and not _csrf_passes(request):
        return error(403, "CSRF check failed: send the CSRF token with a session POST.")
    return None
