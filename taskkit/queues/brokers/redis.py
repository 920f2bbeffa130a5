"""Redis, in kombu's layout: a list per queue, plus one per priority step (``queue\\x06\\x16N``).

A worker takes from the right end of the first non-empty list. Lists are read a
chunk at a time, never whole, and a message is removed only if it still holds
its exact bytes. Messages a worker took but has not acknowledged wait in
kombu's ``unacked`` hash; queues declared but empty show in kombu's
``_kombu.binding.*`` sets.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from itertools import compress
from typing import Any

import redis
from kombu import Connection

from ... import upstream
from ..messages import QueuedMessage, decode, from_envelope
from ..sieve import EVERYTHING, Sieve
from .base import BrokerMemory, Match, celery_own, text
from .redis_link import Link, Reply, Sender

#: Messages read per Redis command while scanning a queue.
CHUNK = 1_000
#: The most messages a Redis delete holds before it removes them.
BATCH = 10_000

#: Removes messages from list KEYS[1]: ARGV[1] is a marker no message equals, then
#: pairs of a message's index (negative: from the right end) and its bytes. Each
#: message is overwritten by the marker, and all markers go in one pass. A
#: message not at its index was moved by workers taking messages: it is looked
#: for, and the later indexes are corrected by as much. Atomic, so no worker
#: ever sees a marker. Returns how many were removed.
_REMOVE = """
local size, shift, marked = redis.call('LLEN', KEYS[1]), 0, 0
for i = 2, #ARGV, 2 do
  local index = tonumber(ARGV[i]) + shift
  if redis.call('LINDEX', KEYS[1], index) ~= ARGV[i + 1] then
    local at = redis.call('LPOS', KEYS[1], ARGV[i + 1], 'RANK', -1)
    if at then
      index = at - size
      shift = index - tonumber(ARGV[i])
    else
      index = nil
    end
  end
  if index then
    redis.call('LSET', KEYS[1], index, ARGV[1])
    marked = marked + 1
  end
end
if marked > 0 then redis.call('LREM', KEYS[1], -marked, ARGV[1]) end
return marked
"""


class _Cursor:
    """A place in one Redis list, counted from its right end (0: the message taken next).

    It keeps its place while workers take messages off that end, and while its
    reader removes messages it has read: no message is skipped.
    """

    def __init__(self, link: Sender, client: Any, key: str, offset: int = 0) -> None:
        self.link = link  # LRANGE and the removals, in flight
        self.client = client  # the rest, one command at a time
        self.key = key
        self.offset = offset
        self.last = b""  # the message at offset - 1: the last one read
        self.kept = b""  # the last one read that its reader keeps
        self.kept_before = b""  # the same, before the last chunk
        self.chunk: list[bytes] = []
        self.ahead: tuple[bytes, Reply] | None = None  # the next chunk, asked for
        self.removals: list[Reply] = []  # sent, their counts not yet read
        self.gone = 0  # messages its reader removed

    def chunks(self) -> Iterator[tuple[int, list[bytes]]]:
        """Chunk after chunk of messages, next taken first, each with its first one's offset.

        One ``LRANGE`` a chunk, reaching one message further than the chunk: the last
        one read, which tells whether workers took messages meanwhile. A deep read
        is paid for by walking the list to it, so it is walked once, not twice.
        From the second chunk on, the next one is asked for before this one is
        handed out, so Redis reads it while the reader works.
        """
        reads = 0
        while True:
            chunk = self._read()
            if chunk is None:  # workers took messages
                self._find_last()
                continue
            if not chunk:
                return
            chunk.reverse()
            self.chunk = chunk
            self.kept_before = self.kept
            self.last = self.kept = chunk[-1]
            offset, self.offset = self.offset, self.offset + len(chunk)
            reads += 1
            if reads > 1:  # a long read: one chunk ahead (a short one asks for no more)
                self.ahead = self._ask()
            yield offset, chunk

    def _ask(self) -> tuple[bytes, Reply]:
        """``LRANGE`` of the next chunk, and the message it must reach back to (or ``b""``)."""
        if self.offset and self.last:
            return self.last, self.link.send(
                "LRANGE", self.key, -(self.offset + CHUNK), -self.offset
            )
        return b"", self.link.send("LRANGE", self.key, -(self.offset + CHUNK), -(self.offset + 1))

    def _read(self) -> list[bytes] | None:
        """The next chunk, or ``None`` when the list moved under it.

        A chunk asked for ahead was read before any removal sent after it, so it
        reaches back to the last message read then, removed since or not. A
        removal's answer waits until a later read: Redis removes while the
        reader reads on.
        """
        before, reply = self.ahead or self._ask()
        self.ahead = None
        chunk: list[bytes] = reply.get()
        if before and (not chunk or chunk.pop() != before):
            return None
        return chunk

    def _find_last(self) -> None:
        """Resume right after the last message read, where it is now.

        If it is gone, so is everything before it: resume at the right end. The
        removals sent are waited for first: this looks on another connection.
        """
        self.settle()
        with self.client.pipeline(transaction=True) as pipe:
            pipe.lpos(self.key, self.last, rank=-1)
            pipe.llen(self.key)
            at, size = pipe.execute()
        self.offset = 0 if at is None else size - at
        if at is None:
            self.last = self.kept = b""

    def dooms(self, raws: set[bytes]) -> None:
        """Its reader will remove ``raws``, messages of the current chunk."""
        kept = (raw for raw in reversed(self.chunk) if raw not in raws)
        self.kept = next(kept, self.kept_before)

    def remove(self, doomed: list[tuple[int, bytes]]) -> None:
        """Send the removal of ``doomed``, read messages with their offsets, and keep its
        place behind them. Their count is read later, by :meth:`settle`.

        Its place assumes all are removed. Those a worker took instead moved the
        list by as much, as any message a worker takes does: the next read sees it.
        """
        marker = f"taskkit-removed-{uuid.uuid4()}".encode()
        pairs = [item for offset, raw in doomed for item in (-offset - 1, raw)]
        self.removals.append(self.link.send("EVAL", _REMOVE, 1, self.key, marker, *pairs))
        self.offset = self.offset - len(doomed) if self.kept else 0  # nothing kept: all gone
        self.last = self.kept

    def settle(self) -> None:
        """Count the messages the removals sent so far removed, into :attr:`gone`."""
        self.gone += sum(int(reply.get()) for reply in self.removals)
        self.removals.clear()


class RedisBroker:
    """A queue's Redis lists, read and changed in place.

    With kombu's ``global_keyprefix`` transport option, kombu's client puts the
    prefix before the keys of some commands (``LLEN``, ``DEL``) and not of others
    (``LRANGE``, ``EVAL``, ``SCAN``). A plain client on the same connections is
    used instead, and every key is prefixed here, the same way for all commands.
    """

    name = "redis"
    listable = True

    def __init__(self, connection: Connection) -> None:
        channel: Any = connection.default_channel  # kombu's Redis channel
        self.channel = channel
        self.prefix = upstream.redis_key_prefix(channel)
        self.client: Any = (
            redis.Redis(connection_pool=channel.client.connection_pool)
            if self.prefix
            else channel.client
        )

    def _keys(self, queue: str) -> list[str]:
        """The queue's lists in the order a worker empties them."""
        steps = sorted(set(self.channel.priority_steps))
        return [self.prefix + upstream.priority_queue(self.channel, queue, step) for step in steps]

    def queues(self) -> set[str]:
        """The queues bound to an exchange (declared, maybe empty), but Celery's own.

        Bindings are kombu's ``_kombu.binding.<exchange>`` sets of
        ``routing key, pattern, queue``.
        """
        prefix = self.prefix + self.channel.keyprefix_queue % ""
        found = set()
        for key in self.client.scan_iter(match=f"{prefix}*", count=CHUNK):
            if celery_own(text(key)[len(prefix) :]):
                continue
            found |= {
                text(member).split(self.channel.sep)[-1] for member in self.client.smembers(key)
            }
        return {queue for queue in found if queue and not celery_own(queue)}

    def length(self, queue: str) -> int:
        with self.client.pipeline(transaction=False) as pipe:
            for key in self._keys(queue):
                pipe.llen(key)
            return sum(pipe.execute())

    def _cursors(self, link: Link, queue: str, start: int) -> Iterator[tuple[int, _Cursor]]:
        """A cursor per list of ``queue`` from overall position ``start``, with its base."""
        base = 0
        for key in self._keys(queue):
            size = self.client.llen(key)
            if start - base < size:
                yield base, _Cursor(link, self.client, key, max(start - base, 0))
            base += size

    def scan(
        self, queue: str, start: int = 0, sieve: Sieve = EVERYTHING
    ) -> Iterator[QueuedMessage]:
        passes = sieve.passes
        with Link(self.client) as link:
            for base, cursor in self._cursors(link, queue, start):
                for first, chunk in cursor.chunks():
                    if not sieve.chunk_passes(chunk):
                        continue
                    sieved = compress(enumerate(chunk, base + first), map(passes, chunk))
                    for index, raw in sieved:  # no Python loop over what the sieve stops
                        yield decode(raw, queue, index, cursor.key)

    def delete(self, queue: str, match: Match, sieve: Sieve = EVERYTHING, limit: int = 0) -> int:
        """Remove matches in batches, each with a single pass over the list.

        A batch is sent when it holds :data:`BATCH` messages, when the cursor has
        gone twice as deep as at the last batch (so the passes add up to about
        twice the list), at the limit, and at the end. It runs while the scan
        goes on; with a limit, it is waited for, as its count decides whether to
        go on.
        """
        removed = 0
        passes = sieve.passes
        with Link(self.client) as link:
            for _, cursor in self._cursors(link, queue, 0):
                doomed: list[tuple[int, bytes]] = []
                sent_at = 0
                for first, chunk in cursor.chunks():
                    found = (
                        [
                            (offset, raw)
                            for offset, raw in compress(enumerate(chunk, first), map(passes, chunk))
                            if match(decode(raw, queue))
                        ]
                        if sieve.chunk_passes(chunk)
                        else []
                    )
                    if limit:
                        found = found[: limit - removed - cursor.gone - len(doomed)]
                    cursor.dooms({raw for _, raw in found})
                    doomed += found
                    full = limit and removed + cursor.gone + len(doomed) >= limit
                    if doomed and (len(doomed) >= BATCH or cursor.offset >= 2 * sent_at or full):
                        cursor.remove(doomed)
                        if limit:
                            cursor.settle()
                        doomed, sent_at = [], cursor.offset
                    if full:
                        return removed + cursor.gone
                if doomed:
                    cursor.remove(doomed)
                cursor.settle()
                removed += cursor.gone
        return removed

    def held(self, sieve: Sieve = EVERYTHING) -> Iterator[QueuedMessage]:
        unacked = self.prefix + self.channel.unacked_key
        for _, value in self.client.hscan_iter(unacked, count=CHUNK):
            if not sieve.passes(value):
                continue
            try:
                envelope, _, queue = json.loads(value)
            except (ValueError, TypeError):
                continue
            message = from_envelope(envelope, str(queue))
            if message is not None:
                yield message

    def purge(self, queue: str) -> int:
        removed = self.length(queue)
        self.client.delete(*self._keys(queue))
        return removed

    def memory(self) -> BrokerMemory | None:
        """From ``INFO memory``; ``None`` where the server does not tell (some hosted ones)."""
        try:
            info = self.client.info("memory")
            return BrokerMemory(
                used=int(info["used_memory"]),
                limit=int(info.get("maxmemory", 0)),
                policy=str(info.get("maxmemory_policy", "")),
            )
        except (redis.ResponseError, KeyError, ValueError, TypeError):
            return None
