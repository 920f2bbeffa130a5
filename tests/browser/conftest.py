"""Browser tests: Debian's chromium, driven by Playwright, against a live server.

Nothing here downloads a browser: ``make chromium`` installs the system's, and
a missing chromium fails these tests, never skips them. Each page a test visits
can be saved with :func:`screenshot` under ``build/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.integration.conftest import (
    Broker,
    current,
    make_app,
    start_worker,
    stop,
    transport_settings,
)
from tests.users import PASSWORD

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "build" / "screenshots"
CHROMIUM = os.environ.get("TASKKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
#: Headless, and quiet: without the background-networking flags chromium keeps
#: calling home, which a closed network refuses over and over.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


@pytest.fixture(scope="package")
def browser(django_db_setup: Any) -> Iterator[Browser]:
    """One chromium for the package; Playwright stops with it, before other tests run.

    Playwright's sync API keeps an asyncio loop in this thread, so Django would take
    the tests' ORM calls for calls from async code (they are not): while it runs,
    ``DJANGO_ALLOW_ASYNC_UNSAFE`` says so. The test database exists before.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: run `make chromium`")
    previous = os.environ.get(UNSAFE)
    os.environ[UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=ARGS
            )
            yield launched
            launched.close()
    finally:
        if previous is None:
            del os.environ[UNSAFE]
        else:
            os.environ[UNSAFE] = previous


@pytest.fixture
def page(browser: Browser, live_server: Any) -> Iterator[Page]:
    """A fresh browser context on the live server (``page.goto("/admin/")`` works)."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """The embedded filesystem broker in a fresh folder, as Celery's app in every thread."""
    options = transport_settings("filesystem", tmp_path)
    app = make_app("browser", "filesystem://", **options)
    with current(app):
        yield Broker("filesystem", "filesystem://", options, app)


@pytest.fixture
def worker(broker: Broker) -> Iterator[None]:
    """A real worker on the test's broker, writing to the live server's database."""
    process = start_worker(broker, "browser")
    try:
        yield
    finally:
        stop(process)


@pytest.fixture
def login(page: Page) -> Callable[[User], Page]:
    """Log ``user`` into the admin through its login form; the page shows the admin index."""

    def log_in(user: User) -> Page:
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        expect(page.locator("#user-tools")).to_contain_text(user.username)
        return page

    return log_in


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as ``build/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def forged_post(page: Page, path: str, data: dict[str, str] | None = None) -> int:
    """POST to ``path`` as the logged-in user, CSRF token included; the status code."""
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        path, form={"csrfmiddlewaretoken": token, **(data or {})}, headers={"Referer": page.url}
    )
    return response.status
