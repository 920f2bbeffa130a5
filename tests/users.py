"""Staff users with taskkit's permissions, for the admin, API and browser tests."""

from __future__ import annotations

from django.contrib.auth.models import Permission, User
from django.test import Client

PASSWORD = "staff-pw"


def make_user(username: str, *perms: str, superuser: bool = False) -> User:
    """A staff user with taskkit's permissions ``perms`` (codenames), or a superuser."""
    if superuser:
        return User.objects.create_superuser(username, password=PASSWORD)
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=perms))
    return user


def staff(username: str, *perms: str, csrf: bool = False) -> Client:
    """A test client logged in as a new staff user with ``perms``; ``csrf``: checks on."""
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(make_user(username, *perms))
    return client
