"""The Redis cursor reads a chunk with one command and keeps its place when workers take
messages: against a list that answers like Redis and counts the commands."""

from __future__ import annotations

from typing import Any

import pytest

from taskkit.queues.brokers import redis as redis_broker


class FakeList:
    """One Redis list (``LRANGE``, ``LPOS`` and ``LLEN`` on it), every command counted."""

    def __init__(self, items: list[bytes]) -> None:
        self.items = items
        self.commands: list[str] = []

    def _slice(self, start: int, stop: int) -> list[bytes]:
        size = len(self.items)
        start, stop = (i + size if i < 0 else i for i in (start, stop))
        return self.items[max(start, 0) : stop + 1] if stop >= 0 else []

    def lrange(self, key: str, start: int, stop: int) -> list[bytes]:
        self.commands.append("LRANGE")
        return self._slice(start, stop)

    def pipeline(self, transaction: bool = True) -> Any:
        raise AssertionError("a chunk is read with one command")

    def take(self, count: int) -> None:
        """A worker takes ``count`` messages off the right end."""
        del self.items[len(self.items) - count :]


def read_all(fake: FakeList, during: Any = None) -> list[bytes]:
    cursor = redis_broker._Cursor(fake, "q")
    seen: list[bytes] = []
    for _, chunk in cursor.chunks():
        seen += chunk
        if during is not None:
            during(cursor)
    return seen


def test_one_command_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_broker, "CHUNK", 3)
    fake = FakeList([str(i).encode() for i in range(10)])  # the right end (9) is taken first
    assert read_all(fake) == [str(i).encode() for i in reversed(range(10))]
    assert fake.commands == ["LRANGE"] * 5  # four chunks and the empty read that ends it


def test_messages_taken_while_reading_are_neither_read_again_nor_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_broker, "CHUNK", 3)
    fake = FakeList([str(i).encode() for i in range(10)])
    taken: list[int] = []

    def lpos(key: str, value: bytes, rank: int) -> int | None:
        fake.commands.append("LPOS")
        matches = [i for i, item in enumerate(fake.items) if item == value]
        return matches[-1] if matches else None

    class Pipe:
        def __init__(self) -> None:
            self.calls: list[Any] = []

        def __enter__(self) -> Pipe:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def lpos(self, key: str, value: bytes, rank: int) -> None:
            self.calls.append(lambda: lpos(key, value, rank))

        def llen(self, key: str) -> None:
            self.calls.append(lambda: len(fake.items))

        def execute(self) -> list[Any]:
            return [call() for call in self.calls]

    fake.pipeline = lambda transaction=True: Pipe()  # type: ignore[method-assign]

    def worker_takes(cursor: Any) -> None:
        if not taken:
            fake.take(2)  # 9 and 8, read already
            taken.append(2)

    seen = read_all(fake, worker_takes)
    assert seen == [str(i).encode() for i in reversed(range(10))]
    assert "LPOS" in fake.commands  # it noticed, and found its place again
