"""taskkit in the Django admin: the "Tasks" section."""

from . import dashboard, runs  # noqa: F401 - registering is importing
