"""taskkit in the Django admin: the "Tasks" section."""

from . import dashboard  # noqa: F401 - registers the admin pages
