"""The Redis cursor reads a chunk with one command and keeps its place when workers take
messages: against a list that answers like Redis and counts the commands."""

from __future__ import annotations

from typing import Any

import pytest

from taskkit.queues.brokers import redis as redis_broker
from taskkit.queues.brokers.redis_link import Reply


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

    def send(self, command: str, *args: Any) -> Reply:
        """A link whose commands run as they are sent, as Redis runs them in order."""
        if command == "EVAL":  # the removal: (index, message) pairs after the marker
            self.commands.append("REMOVE")
            doomed = set(args[5::2])
            kept = [item for item in self.items if item not in doomed]
            count, self.items[:] = len(self.items) - len(kept), kept
            return Reply.of(count)
        assert command == "LRANGE"
        return Reply.of(self.lrange(*args))

    def lpos(self, key: str, value: bytes, rank: int) -> int | None:
        self.commands.append("LPOS")
        matches = [i for i, item in enumerate(self.items) if item == value]
        return matches[-1] if matches else None

    def pipeline(self, transaction: bool = True) -> Pipe:
        return Pipe(self)

    def take(self, count: int) -> None:
        """A worker takes ``count`` messages off the right end."""
        del self.items[len(self.items) - count :]


class Pipe:
    """The pipeline the cursor finds its place again with."""

    def __init__(self, fake: FakeList) -> None:
        self.fake = fake
        self.calls: list[Any] = []

    def __enter__(self) -> Pipe:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def lpos(self, key: str, value: bytes, rank: int) -> None:
        self.calls.append(lambda: self.fake.lpos(key, value, rank))

    def llen(self, key: str) -> None:
        self.calls.append(lambda: len(self.fake.items))

    def execute(self) -> list[Any]:
        return [call() for call in self.calls]


def read_all(fake: FakeList, during: Any = None) -> list[bytes]:
    cursor = redis_broker._Cursor(fake, fake, "q")
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
    assert "LPOS" not in fake.commands


def test_messages_taken_while_reading_are_neither_read_again_nor_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_broker, "CHUNK", 3)
    fake = FakeList([str(i).encode() for i in range(10)])
    taken: list[int] = []

    def worker_takes(cursor: Any) -> None:
        if not taken:
            fake.take(2)  # 9 and 8, read already
            taken.append(2)

    seen = read_all(fake, worker_takes)
    assert seen == [str(i).encode() for i in reversed(range(10))]
    assert "LPOS" in fake.commands  # it noticed, and found its place again


def test_a_chunk_asked_for_ahead_is_checked_against_messages_taken_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_broker, "CHUNK", 3)
    fake = FakeList([str(i).encode() for i in range(12)])
    reads: list[int] = []

    def worker_takes(cursor: Any) -> None:
        reads.append(1)
        if len(reads) == 2:  # the third chunk is asked for already: it must not be used
            assert cursor.ahead is not None
            fake.take(7)  # 11 to 5: six read, one not

    seen = read_all(fake, worker_takes)
    assert seen == [str(i).encode() for i in reversed(range(12))]  # 5 seen once, none skipped
    assert "LPOS" in fake.commands


def test_a_reader_removing_what_it_read_while_the_next_chunk_is_ahead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_broker, "CHUNK", 3)
    fake = FakeList([str(i).encode() for i in range(20)])
    cursor = redis_broker._Cursor(fake, fake, "q")
    seen: list[bytes] = []
    for first, chunk in cursor.chunks():
        seen += chunk
        doomed = [(offset, raw) for offset, raw in enumerate(chunk, first) if int(raw) % 2 == 0]
        cursor.dooms({raw for _, raw in doomed})
        if doomed:
            cursor.remove(doomed)  # runs after the chunk asked for ahead was read
    cursor.settle()
    assert seen == [str(i).encode() for i in reversed(range(20))]  # each once, in order
    assert fake.items == [str(i).encode() for i in range(1, 20, 2)]
    assert cursor.gone == 10
    assert "LPOS" not in fake.commands  # no chunk read ahead was thrown away
