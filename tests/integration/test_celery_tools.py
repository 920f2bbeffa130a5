"""Celery's own tools on taskkit's runs: ``AsyncResult``, the worker's log, events and Flower.

A worker of this module's own, with task events (``-E``) and its log at INFO in a
file, consumes a queue no other worker does; the package's worker runs the Beat
that sends retries back to it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import states
from celery.events.receiver import EventReceiver
from celery.exceptions import TaskRevokedError, TimeoutError
from django.utils import timezone

import taskkit
from taskkit import queues
from taskkit.bridge.work.cancellations import cancel
from taskkit.models import RunStatus, TaskRun
from tests.apps.nested.tasks.echo.fail import EchoError

from .conftest import REPO, Broker, stop, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


@dataclass
class ToolsWorker:
    queue: str
    log: Path

    def lines(self, needle: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if needle in line]


@pytest.fixture(scope="module")
def tools_worker(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolsWorker]:
    """A worker with task events on, logging at INFO to a file, on a queue of its own."""
    queue = f"tools-{uuid.uuid4().hex[:8]}"
    log = tmp_path_factory.mktemp("tools") / "worker.log"
    command = [
        sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "-Q", queue,
        "-P", "threads", "-c", "2", "-l", "info", "-E", "--without-gossip", "--without-mingle",
        "-n", f"tools-{broker.name}-{uuid.uuid4().hex[:6]}@%h",
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=worker_env(broker),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        worker = ToolsWorker(queue, log)
        wait_until(lambda: worker.lines(" ready."), "the worker to be ready", process)
        yield worker
    finally:
        stop(process)


def wait_until(
    found: Callable[[], Any], what: str, process: subprocess.Popen[str] | None = None
) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended ({process.returncode}) waiting for {what}")
        time.sleep(0.1)
    raise AssertionError(f"waited 60 s for {what}")


class _Receiver(EventReceiver):
    """Celery's event receiver, telling when its queue is bound."""

    ready = threading.Event()

    def on_consume_ready(self, *args: Any, **kwargs: Any) -> None:
        self.ready.set()
        super().on_consume_ready(*args, **kwargs)


@pytest.fixture
def events(broker: Broker) -> Iterator[list[dict[str, Any]]]:
    """The task events the brokers carry while the test runs, as Celery's receiver gets them."""
    got: list[dict[str, Any]] = []
    with broker.app.connection_for_read() as connection:
        receiver = _Receiver(connection, handlers={"*": got.append}, app=broker.app)
        receiver.ready = threading.Event()
        thread = threading.Thread(
            target=lambda: receiver.capture(limit=None, timeout=None, wakeup=False), daemon=True
        )
        thread.start()
        assert receiver.ready.wait(30), "the event receiver did not start"
        try:
            yield got
        finally:
            receiver.should_stop = True
            thread.join(10)


def of_run(events: list[dict[str, Any]], run_id: str, kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event.get("uuid") == run_id and event["type"] == kind]


def test_async_result_get_returns_the_result_and_the_log_and_events_show_it(
    broker: Broker, tools_worker: ToolsWorker, events: list[dict[str, Any]]
) -> None:
    handle = taskkit.enqueue("echo:payload", {"a": 1, "tool": "celery"}, queue=tools_worker.queue)
    result = broker.app.AsyncResult(handle.id)
    assert result.get(timeout=20) == {"a": 1, "tool": "celery"}
    assert (result.status, result.successful(), result.name) == ("SUCCESS", True, "echo:payload")
    logged = wait_until(lambda: tools_worker.lines(f"echo:payload[{handle.id}] succeeded in "), "")
    assert logged[0].endswith(": {'a': 1, 'tool': 'celery'}")
    (succeeded,) = wait_until(lambda: of_run(events, handle.id, "task-succeeded"), "the event")
    assert succeeded["result"] == "{'a': 1, 'tool': 'celery'}"


def test_a_failed_run_raises_its_exception_from_get(
    broker: Broker, tools_worker: ToolsWorker
) -> None:
    handle = taskkit.enqueue("echo:fail", {"n": 2}, queue=tools_worker.queue)
    result = broker.app.AsyncResult(handle.id)
    with pytest.raises(EchoError, match=r"failed with \{'n': 2\}"):
        result.get(timeout=20)
    assert (result.status, result.failed()) == ("FAILURE", True)
    assert "EchoError: failed with" in str(result.traceback)


def test_a_retried_attempt_is_reported_as_a_retry_not_a_success(
    broker: Broker, tools_worker: ToolsWorker, events: list[dict[str, Any]]
) -> None:
    handle = taskkit.enqueue("flaky:retry", {"succeed_on": 2}, queue=tools_worker.queue)
    result = broker.app.AsyncResult(handle.id)
    assert result.get(timeout=30) == {"attempt": 2}  # the Beat sent the retry
    logged = tools_worker.lines(f"flaky:retry[{handle.id}]")
    assert any(
        f"flaky:retry[{handle.id}] retry: Retry in 0.2s: Flaky('attempt 1 failed')" in line
        for line in logged
    ), logged
    succeeded = [line for line in logged if " succeeded in " in line]
    assert len(succeeded) == 1 and succeeded[0].endswith(": {'attempt': 2}"), logged
    (retried,) = wait_until(lambda: of_run(events, handle.id, "task-retried"), "the event")
    assert "Flaky('attempt 1 failed')" in retried["exception"]  # Celery sends the Retry's repr


def test_a_delayed_run_is_pending_and_a_cancelled_one_revoked(broker: Broker) -> None:
    delayed = taskkit.enqueue_in("echo:payload", 3600, {"later": True})
    result = broker.app.AsyncResult(delayed.id)
    assert result.status == "PENDING"
    with pytest.raises(TimeoutError):
        result.get(timeout=0.3)
    # a track="all" run on a queue no worker consumes: queued, then deleted from its queue
    queued = taskkit.enqueue("track:outbox", {"a": 1}, queue=f"nobody-{uuid.uuid4().hex[:8]}")
    assert broker.app.AsyncResult(queued.id).status == "PENDING"
    assert queues.delete_run(queued.id)
    assert TaskRun.objects.get(pk=queued.id).status == RunStatus.CANCELLED
    cancelled = broker.app.AsyncResult(queued.id)
    assert str(cancelled.status) == "REVOKED"
    with pytest.raises(TaskRevokedError):
        cancelled.get(timeout=5)


def test_a_run_deleted_while_queued_is_revoked_in_the_events_not_succeeded(
    broker: Broker, tools_worker: ToolsWorker, events: list[dict[str, Any]]
) -> None:
    """The worker skips it (its row says cancelled): monitors hear ``task-revoked``."""
    payload = {"deleted": uuid.uuid4().hex}
    cancel(queue=tools_worker.queue, name="echo:payload", payload=payload, count=1)
    run_id = str(uuid.uuid4())
    queued_before = (timezone.now() - timedelta(minutes=1)).isoformat()
    broker.app.send_task(
        "echo:payload",
        kwargs={"payload": payload, "context": {"run_id": run_id, "enqueued_at": queued_before}},
        task_id=run_id,
        queue=tools_worker.queue,
    )
    (revoked,) = wait_until(lambda: of_run(events, run_id, "task-revoked"), "the event")
    assert (revoked["terminated"], revoked["expired"]) == (False, False)
    assert TaskRun.objects.get(pk=run_id).status == RunStatus.CANCELLED
    assert str(broker.app.AsyncResult(run_id).status) == "REVOKED"
    assert not of_run(events, run_id, "task-succeeded")


def test_a_successful_track_failures_run_stays_pending(
    broker: Broker, tools_worker: ToolsWorker, events: list[dict[str, Any]]
) -> None:
    """No row is written for it: Celery's result backend has nothing to read (documented)."""
    handle = taskkit.enqueue("track:quiet", {}, queue=tools_worker.queue)
    (succeeded,) = wait_until(lambda: of_run(events, handle.id, "task-succeeded"), "the event")
    assert succeeded["result"] == "'quiet'"
    assert broker.app.AsyncResult(handle.id).state == states.PENDING


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def flower_task(port: int, run_id: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/task/info/{run_id}", timeout=5
        ) as response:
            info: dict[str, Any] = json.loads(response.read())
    except (urllib.error.URLError, ConnectionError):  # not up yet, or no such task yet (404)
        return None
    # a run whose task-received came before Flower's event queue has no name there: not yet
    return info if info.get("state") == "SUCCESS" and info.get("name") else None


def test_flower_shows_the_result(broker: Broker, tools_worker: ToolsWorker, tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "celery", "-A", "tests.celery_app", "flower"]
    log = tmp_path / "flower.log"
    with log.open("w") as out:
        flower = subprocess.Popen(
            [*command, f"--port={port}", "--address=127.0.0.1"],
            cwd=REPO,
            env={**worker_env(broker), "FLOWER_UNAUTHENTICATED_API": "true"},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        wait_until(lambda: _listening(port), "Flower to listen", flower)
        # Flower may bind its event queue after it listens: a run every 2 s until one shows
        handles: list[taskkit.RunHandle] = []
        info = None
        deadline = time.monotonic() + 60
        while info is None and time.monotonic() < deadline:
            handles.append(
                taskkit.enqueue("echo:payload", {"shown": "flower"}, queue=tools_worker.queue)
            )
            assert handles[-1].result(timeout=20) == {"shown": "flower"}
            shown = time.monotonic() + 2
            while info is None and time.monotonic() < shown:
                info = next(filter(None, (flower_task(port, h.id) for h in handles)), None)
                time.sleep(0.2)
        assert info is not None, f"Flower showed none of {len(handles)} runs: {log.read_text()}"
        assert (info["name"], info["result"]) == ("echo:payload", "{'shown': 'flower'}")
    finally:
        stop(flower)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_the_worker_and_this_process_take_the_run_table_as_result_backend(
    broker: Broker, tools_worker: ToolsWorker
) -> None:
    assert broker.app.backend.as_uri() == "taskkit://"
    (banner,) = tools_worker.lines(".> results:")
    assert banner.split()[-1] == "taskkit://"
