"""Inline runs: results, errors, async tasks, hooks and single-flight."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import taskkit
from taskkit import InvalidPayload, ResultNotSerializable, Source, TaskContext, TaskEvent, task
from taskkit.runner import flights
from tests.apps.nested.tasks.echo.fail import EchoError

WAIT = 10  # seconds; only ever reached when a test is failing


@pytest.fixture
def joins(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    """Count callers joining single-flight; ``wait_for(n)`` blocks until n have joined."""
    joined: list[Hashable] = []
    original = flights._join

    def spy(key: Hashable) -> Any:
        result = original(key)
        joined.append(key)
        return result

    monkeypatch.setattr(flights, "_join", spy)

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + WAIT
        while len(joined) < count:
            assert time.monotonic() < deadline, f"only {len(joined)} of {count} callers joined"
            time.sleep(0.001)

    yield wait_for
    assert len(flights) == 0  # every flight landed


def test_run_task_by_name() -> None:
    assert taskkit.run_task("echo:payload", {"a": 1}) == {"a": 1}
    assert taskkit.run_task("db:migrate") == {"migrated": True, "payload": {}}


def test_errors_propagate_unchanged() -> None:
    with pytest.raises(EchoError, match=r"failed with \{'x': 1\}"):
        taskkit.run_task("echo:fail", {"x": 1})
    assert len(flights) == 0


def test_payload_is_checked_before_running() -> None:
    ran: list[int] = []
    value = task(name="schema:checked", schema={"n": int})(lambda event: ran.append(1))
    with pytest.raises(InvalidPayload):
        value.run_inline({"n": "one"})
    with pytest.raises(InvalidPayload, match="must be a mapping"):
        taskkit.run_task("echo:payload", [1])  # type: ignore[arg-type]
    assert ran == []


def test_payload_size_limit_comes_from_settings(settings: Any) -> None:
    settings.TASKKIT = {"MAX_PAYLOAD_BYTES": 16}
    with pytest.raises(InvalidPayload, match="limit is 16"):
        taskkit.run_task("echo:payload", {"text": "x" * 20})


def test_non_serialisable_result_is_a_clear_error() -> None:
    value = task(name="bad:result")(lambda event: {"when": object()})
    with pytest.raises(ResultNotSerializable, match="'bad:result' returned a result"):
        value.run_inline()


def test_result_is_returned_as_json_reads_it() -> None:
    value = task(name="tuple:result")(lambda event: {"pair": (1, 2)})
    assert value.run_inline() == {"pair": [1, 2]}


def test_context_reaches_the_task() -> None:
    seen: list[TaskEvent] = []
    value = task(name="ctx:seen", queue="q1")(lambda event: seen.append(event))
    value.run_inline({"a": 1})
    value.run_inline(context={"source": Source.CLI, "attempt": 2})
    explicit = TaskContext(run_id="fixed", queue="q9")
    value.run_inline({"b": 1}, context=explicit)
    first, second, third = seen
    assert first.name == "ctx:seen" and first.payload == {"a": 1}
    assert first.context.queue == "q1" and first.context.source is Source.INLINE
    assert first.context.logger.name == "taskkit.tasks.ctx:seen"
    assert second.context.source is Source.CLI and second.context.attempt == 2
    assert third.context is explicit


def test_async_task_from_sync_and_async_callers() -> None:
    assert taskkit.run_task("aio:sleep", {"n": 1}) == {"async": True, "payload": {"n": 1}}
    assert asyncio.run(taskkit.arun_task("aio:sleep", {"n": 2})) == {
        "async": True,
        "payload": {"n": 2},
    }


def test_sync_task_from_async_caller() -> None:
    assert asyncio.run(taskkit.arun_task("echo:payload", {"a": 1})) == {"a": 1}
    with pytest.raises(EchoError):
        asyncio.run(taskkit.arun_task("echo:fail"))


def test_hooks_run_with_event_and_outcome() -> None:
    calls: list[tuple[str, Any]] = []

    def fail(event: TaskEvent) -> None:
        raise KeyError(event.payload["k"])

    ok = task(name="hooks:ok", on_success=lambda e, r: calls.append(("ok", r)))(lambda e: 42)
    bad = task(name="hooks:bad", on_failure=lambda e, exc: calls.append(("bad", exc)))(fail)
    assert ok.run_inline() == 42
    with pytest.raises(KeyError):
        bad.run_inline({"k": "v"})
    assert calls[0] == ("ok", 42)
    assert calls[1][0] == "bad" and isinstance(calls[1][1], KeyError)
    assert asyncio.run(ok.arun_inline()) == 42
    with pytest.raises(KeyError):
        asyncio.run(bad.arun_inline({"k": "v"}))
    assert [c[0] for c in calls] == ["ok", "bad", "ok", "bad"]


def test_a_failing_hook_does_not_change_the_outcome(caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("hook broke")

    ok = task(name="hooks:broken", on_success=broken)(lambda e: "fine")
    bad = task(name="hooks:broken2", on_failure=broken)(lambda e: 1 / 0)
    assert ok.run_inline() == "fine"
    with pytest.raises(ZeroDivisionError):
        bad.run_inline()
    assert asyncio.run(ok.arun_inline()) == "fine"
    with pytest.raises(ZeroDivisionError):
        asyncio.run(bad.arun_inline())
    assert caplog.text.count("hook of task") == 4


# --- single-flight -------------------------------------------------------------------


def gated(name: str, **options: Any) -> tuple[taskkit.Task, threading.Event, list[Any]]:
    """A task that records each execution and blocks until the gate opens."""
    gate = threading.Event()
    runs: list[Any] = []

    def run(event: TaskEvent) -> dict[str, Any]:
        runs.append(dict(event.payload))
        assert gate.wait(WAIT)
        if event.payload.get("fail"):
            raise ValueError(f"run {len(runs)} failed")
        return {"run": len(runs)}

    return task(name=name, **options)(run), gate, runs


def test_equal_concurrent_calls_share_one_run_threads(joins: Callable[[int], None]) -> None:
    value, gate, runs = gated("sf:threads")
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(value.run_inline, {"a": 1, "b": [1, 2]}) for _ in range(8)]
        joins(8)
        gate.set()
        results = [f.result(WAIT) for f in futures]
    assert runs == [{"a": 1, "b": [1, 2]}]
    assert results == [{"run": 1}] * 8


def test_payload_key_order_does_not_matter(joins: Callable[[int], None]) -> None:
    value, gate, runs = gated("sf:order")
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(value.run_inline, {"a": 1, "b": 2})
        second = pool.submit(value.run_inline, {"b": 2, "a": 1})
        joins(2)
        gate.set()
        assert first.result(WAIT) == second.result(WAIT)
    assert len(runs) == 1


def test_another_payload_runs_separately(joins: Callable[[int], None]) -> None:
    value, gate, runs = gated("sf:payloads")
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(value.run_inline, {"n": n % 2}) for n in range(4)]
        joins(4)
        gate.set()
        for future in futures:
            future.result(WAIT)
    assert sorted(r["n"] for r in runs) == [0, 1]


def test_all_callers_get_the_same_exception(joins: Callable[[int], None]) -> None:
    value, gate, runs = gated("sf:fail")
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(value.run_inline, {"fail": True}) for _ in range(4)]
        joins(4)
        gate.set()
        errors = [f.exception(WAIT) for f in futures]
    assert len(runs) == 1
    assert all(e is errors[0] for e in errors)
    assert str(errors[0]) == "run 1 failed"


def test_later_calls_run_again() -> None:
    value, gate, _ = gated("sf:sequential")
    gate.set()
    assert [value.run_inline({}), value.run_inline({})] == [{"run": 1}, {"run": 2}]


def test_opt_out_runs_every_call(joins: Callable[[int], None]) -> None:
    value, gate, runs = gated("sf:off", single_flight=False)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(value.run_inline, {"a": 1}) for _ in range(4)]
        deadline = time.monotonic() + WAIT
        while len(runs) < 4:  # all four really run at once
            assert time.monotonic() < deadline
            time.sleep(0.001)
        gate.set()
        assert sorted(f.result(WAIT)["run"] for f in futures) == [4, 4, 4, 4]
    assert len(runs) == 4


def test_equal_concurrent_calls_share_one_run_asyncio(joins: Callable[[int], None]) -> None:
    runs: list[int] = []

    async def main() -> list[Any]:
        gate = asyncio.Event()

        async def run(event: TaskEvent) -> int:
            runs.append(1)
            await gate.wait()
            return len(runs)

        value = task(name="sf:async")(run)
        calls = [asyncio.create_task(value.arun_inline({"x": 1})) for _ in range(5)]
        other = asyncio.create_task(value.arun_inline({"x": 2}))
        await asyncio.to_thread(joins, 6)
        gate.set()
        return [*await asyncio.gather(*calls), await other]

    assert asyncio.run(main()) == [2, 2, 2, 2, 2, 2]
    assert len(runs) == 2


def test_async_callers_share_an_exception(joins: Callable[[int], None]) -> None:
    async def main() -> list[BaseException | Any]:
        gate = asyncio.Event()

        async def run(event: TaskEvent) -> None:
            await gate.wait()
            raise LookupError("shared")

        value = task(name="sf:async-fail")(run)
        calls = [asyncio.create_task(value.arun_inline()) for _ in range(3)]
        await asyncio.to_thread(joins, 3)
        gate.set()
        return await asyncio.gather(*calls, return_exceptions=True)

    errors = asyncio.run(main())
    assert all(isinstance(e, LookupError) and e is errors[0] for e in errors)


def test_thread_and_asyncio_callers_share_one_run(joins: Callable[[int], None]) -> None:
    value, gate, runs = gated("sf:mixed")

    async def async_caller() -> Any:
        return await value.arun_inline({"m": 1})

    with ThreadPoolExecutor(2) as pool:
        in_thread = pool.submit(value.run_inline, {"m": 1})
        joins(1)
        in_loop = pool.submit(asyncio.run, async_caller())
        joins(2)
        gate.set()
        assert in_thread.result(WAIT) == in_loop.result(WAIT) == {"run": 1}
    assert len(runs) == 1


def test_a_task_calling_itself_does_not_deadlock() -> None:
    depth: list[int] = []

    def run(event: TaskEvent) -> int:
        depth.append(1)
        if len(depth) < 3:
            return int(recursive.run_inline(event.payload)) + 1
        return 1

    recursive = task(name="sf:recursive")(run)
    assert recursive.run_inline({"same": True}) == 3


def test_a_cancelled_waiter_does_not_break_the_shared_run(joins: Callable[[int], None]) -> None:
    async def main() -> Any:
        gate = asyncio.Event()

        async def run(event: TaskEvent) -> str:
            await gate.wait()
            return "done"

        value = task(name="sf:cancel")(run)
        leader = asyncio.create_task(value.arun_inline())
        waiter = asyncio.create_task(value.arun_inline())
        await asyncio.to_thread(joins, 2)
        waiter.cancel()
        await asyncio.sleep(0)
        gate.set()
        return await leader, waiter.cancelled()

    assert asyncio.run(main()) == ("done", True)
