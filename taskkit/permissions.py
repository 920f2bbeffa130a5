"""Who may see and who may change queued work: one answer for the admin and the HTTP API.

Both need active staff. ``taskkit.manage_tasks`` (enqueue, retry, delete, purge)
includes seeing; ``taskkit.view_dashboard`` is seeing only. Superusers have both.
"""

from __future__ import annotations

from typing import Any

VIEW = "taskkit.view_dashboard"
MANAGE = "taskkit.manage_tasks"


def _staff(user: Any) -> bool:
    return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))


def can_view(user: Any) -> bool:
    """Whether ``user`` may see the dashboard, the queues, the tasks and the runs."""
    return _staff(user) and (user.has_perm(VIEW) or user.has_perm(MANAGE))


def can_manage(user: Any) -> bool:
    """Whether ``user`` may change queued work: enqueue, run now, retry, delete, purge."""
    return _staff(user) and bool(user.has_perm(MANAGE))
