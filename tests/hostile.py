"""What the property tests of the admin, the HTTP API and the commands send: outside text
of any kind, and a broker with some work on it to act upon."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import strategies as st

import taskkit
from taskkit.models import RunStatus, TaskRun
from tests.integration.conftest import BROKERS, current, make_app, purge, transport_settings

#: Text a form, a query or a shell may carry: any, but lone surrogates, which neither a
#: browser (UTF-8) nor a command line sends; and text known to have broken something.
SAMPLES = [
    "\x00", "9" * 30, "-1", "1e308", "inf", "nan", "9999-12-31T23:59:59",
    "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "0001-01-01 00:00", '{"a": 1}',
    '{"a": "\\u0000"}', "[1]", "{", "yes", "99999999999d", "1e308s", "default", "echo:payload",
    "echo:fail", str(uuid.UUID(int=1)), "00000000",
]  # fmt: skip
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=16) | st.sampled_from(SAMPLES)


@contextmanager
def broker_with_work(name: str, folder: Path) -> Iterator[None]:
    """Broker ``name`` (``folder``: the embedded one's) as Celery's current app, holding a
    queued message, with a delayed run and a failed run in the table."""
    app = make_app(f"hostile-{name}", BROKERS[name], **transport_settings(name, folder))
    purge(app)
    with current(app):
        taskkit.enqueue("echo:payload", {"n": 1})
        taskkit.enqueue_in("echo:payload", 3600, {"n": 2})
        TaskRun.objects.create(name="echo:payload", status=RunStatus.FAILED, error="boom")
        yield
    purge(app)
    app.close()
