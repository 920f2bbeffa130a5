"""How much of a run is written down: the task's ``track`` level, or the project's default.

Both sides ask: the sending side to write an outbox row (``all``), the worker side
to choose between the row, the recorder and nothing.
"""

from __future__ import annotations

from ..conf import settings
from ..definition import Task, Track


def track_level(task: Task) -> Track:
    """The task's track level, or the project's default."""
    return task.meta.track or Track(settings.TRACK)
