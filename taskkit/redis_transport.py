"""kombu's Redis transport, with a worker that survives any item in its lists.

kombu parses each item it pops (``BRPOP``) as a JSON envelope, and hands it
on, before Celery or taskkit see it: raw bytes that are no JSON, or JSON that
is no envelope, raised in the worker's main process. The item was gone from
the list and the worker went down with it; an envelope without its delivery
information crashed it while Celery restored the messages in flight, which
then ran twice.

:class:`Channel` looks at each popped item first (:func:`taskkit.quarantine.problem`)
and moves one it cannot take to the :data:`~taskkit.quarantine.QUARANTINE`
list, byte for byte, logging why; kombu sees an empty read and goes on. So
does each message published to a channel the worker listens to (Celery's
remote control, taskkit's broadcasts), and each entry kombu keeps of the
messages a worker holds, which it parses to put them back when their worker
is gone (:class:`QoS`): a malformed entry took down every worker that
started, for good. taskkit makes it the transport of ``redis://`` and
``rediss://`` URLs when Django starts (:func:`install`).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis
from kombu.utils.encoding import bytes_to_str

from . import upstream
from .quarantine import QUARANTINE, entry_problem, problem, report

ALIASES = ("redis", "rediss")


class QoS(upstream.RedisRestoreHooks, redis.QoS):
    """kombu's record of the messages a Redis worker holds, which quarantines an entry it
    cannot put back instead of raising in every worker that looks at it."""

    def screen_entry(self, client: Any, entry: bytes) -> bool:
        why = entry_problem(entry)
        if why is None:
            return True
        client.lpush(QUARANTINE, entry)
        report(f"{self.unacked_key} (messages held by workers)", entry, why)
        return False


class Channel(upstream.RedisReadHooks, redis.Channel):
    """A Redis channel that quarantines the items it cannot deliver."""

    QoS = QoS

    def screen(self, key: bytes, item: bytes) -> bool:
        why = problem(item)
        if why is None:
            return True
        with self.conn_or_acquire() as client:
            client.lpush(QUARANTINE, item)
        report(bytes_to_str(key).rsplit(self.sep, 1)[0], item, why)
        return False


class Transport(redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


def install() -> None:
    """Make this the transport of ``redis://`` and ``rediss://`` broker URLs in this process."""
    for alias in ALIASES:
        upstream.use_transport(alias, f"{__name__}:Transport")
