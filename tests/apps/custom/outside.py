"""A ``django.tasks`` function in an app the test settings do not install."""

from __future__ import annotations

from taskkit.backends.compat import task


@task
def outside() -> None:
    """Never runs: taskkit turns only installed apps' functions into tasks."""
