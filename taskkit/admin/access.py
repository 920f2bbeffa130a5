"""Who sees taskkit's admin pages: operators with taskkit's permissions, not Django's own.

Nothing changes through Django's add, change and delete views; every change is
one of taskkit's own actions, each checked against ``taskkit.manage_tasks``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from ..permissions import can_view


class OperatorsOnly:
    """A ``ModelAdmin`` mixin: shown to ``can_view`` users, read-only through Django's views."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_view(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_view(request.user)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
