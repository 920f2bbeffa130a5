"""Property tests of the management commands: any arguments end in an answer or a clear error.

``taskqueue`` and ``runtask`` take text from a shell, a script or a cron line.
Whatever they are given (NUL, numbers past any column or ``timedelta``,
malformed JSON, options out of place), they print an answer, or stop with a
``CommandError`` (the message on stderr, exit status 1) or their own exit
status; never with a traceback of their own.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.hostile import broker_with_work, texts

pytestmark = pytest.mark.django_db(transaction=True)

OPTIONS = [
    "--json", "--dry-run", "--noinput", "--check", "--overdue", "--start", "--stop", "--name",
    "--payload", "--count", "--queue", "--limit", "--older-than", "--enqueue", "--in", "--at",
]  # fmt: skip
tokens = st.lists(st.sampled_from(OPTIONS) | texts, max_size=6)
SUBCOMMANDS = [
    "details", "health", "workers", "list", "find", "del", "del-run", "stop-run", "del-delayed",
    "purge", "failed", "retry-failed", "remove-failed", "prune", "sync-periodic",
    "enqueue-recurrent", "stop-recurrent",
]  # fmt: skip


@pytest.fixture(params=["filesystem", "redis"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    with broker_with_work(request.param, tmp_path):
        yield


@pytest.fixture(autouse=True)
def no_one_typing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A question asked before a delete meets the end of its input, as in a cron job."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


def answers(command: str, *argv: str) -> None:
    """``command argv`` prints, or stops with a CommandError or an exit status."""
    out = io.StringIO()
    stopped: CommandError | SystemExit | None = None
    try:
        call_command(command, *argv, stdout=out, stderr=out)
    except (CommandError, SystemExit) as exc:
        stopped = exc
    if isinstance(stopped, CommandError):
        assert str(stopped).strip(), "a CommandError says what is wrong"
    elif isinstance(stopped, SystemExit):  # runtask: 1 when the task failed, as it said
        assert stopped.code in (0, 1, 2), stopped.code


common = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@common
@given(st.sampled_from(SUBCOMMANDS), tokens)
@example("prune", ["--older-than", "99999999999d", "--noinput"])
@example("prune", ["--older-than", "1e308s", "--noinput"])
@example("health", ["--overdue", "1e308"])
@example("list", ["default", "--start", "9" * 30])
@example("del", ["default", "echo:payload", "--payload", '{"a": "\\u0000"}', "--noinput"])
@example("find", ["--name", "\x00"])
@example("failed", ["--name", "\x00", "--limit", "-1"])
def test_any_taskqueue_arguments_answer(broker: None, subcommand: str, argv: list[str]) -> None:
    answers("taskqueue", subcommand, *argv)


@common
@given(st.sampled_from(["echo:payload", "echo:fail", "unknown:task", "\x00"]) | texts, tokens)
@example("echo:payload", ["--in", "1e308"])
@example("echo:payload", ["--at", "9999-12-31T23:59:59-12:00"])
@example("echo:payload", ["--at", "0001-01-01T00:00:00+14:00"])
@example("echo:payload", ["--payload", '{"a": "\\u0000"}', "--enqueue"])
@example("echo:payload", ["--enqueue", "--queue", "\x00"])
def test_any_runtask_arguments_answer(broker: None, name: str, argv: list[str]) -> None:
    answers("runtask", name, *argv)
