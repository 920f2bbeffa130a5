"""Every private name of Celery, billiard, kombu and django-celery-beat taskkit uses, in one place.

Each one is something upstream does not offer publicly and taskkit needs; each
has a test in ``tests/test_upstream.py`` that fails when upstream renames or
reshapes it, and ``pyproject.toml`` caps these packages below their next
untested minor release. Nothing else in taskkit touches an upstream ``_name``.
"""

from __future__ import annotations

from typing import Any, cast

import kombu.transport
from billiard import common as billiard_common
from celery import Celery
from django.db.models import Q
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str

# --- Celery ---------------------------------------------------------------------------


def current_object(proxy: Any) -> Any:
    """The object behind one of Celery's proxies (``current_app``), to key or compare it."""
    return proxy._get_current_object()


def drop_connection_pools(app: Celery) -> None:
    """Make ``app`` open new broker connections, with its transport options as they are now.

    Celery builds its connection and producer pools once; after a change of
    ``broker_transport_options`` (publisher confirms) they must be built again.
    """
    app._pool = None  # type: ignore[attr-defined]  # not in the stubs
    app.amqp._producer_pool = None  # type: ignore[attr-defined]


# --- billiard (Celery's prefork pool) ----------------------------------------------------


def pool_process_exiting() -> bool:
    """Whether this prefork pool process is on its way out.

    billiard's handler for a terminate signal (a hard time limit, a cold
    shutdown) raises ``SystemExit`` inside whatever task is running, after
    marking the process; that ``SystemExit`` must end the process, unlike one
    the task's own code raises. ``billiard.common`` is billiard's internal module.
    """
    return bool(billiard_common.terminate_handler_fired())  # type: ignore[attr-defined]


# --- kombu ------------------------------------------------------------------------------


def declared_with_expiry(channel: Any, queue: str) -> bool:
    """Whether a Redis channel declared ``queue`` with ``x-expires`` (its publish differs then)."""
    return queue in (getattr(channel, "_expires", None) or {})


def augment_message(channel: Any, message: dict[str, Any], routing_key: str) -> None:
    """Add the delivery info kombu's virtual channels add to a message before they store it."""
    channel._inplace_augment_message(message, "", routing_key)


def redis_key_prefix(channel: Any) -> str:
    """The ``global_keyprefix`` transport option of kombu's Redis ``channel`` ("" if unset):
    kombu's client puts it before the keys of the commands it knows, and only those."""
    return str(getattr(channel, "global_keyprefix", "") or "")


def priority_queue(channel: Any, queue: str, step: int) -> str:
    """The Redis list that holds ``queue``'s messages of priority ``step``."""
    return str(channel._q_for_pri(queue, step))


class RedisReadHooks:
    """Mixed in before kombu's Redis channel: each item its ``BRPOP`` pops, and each message
    published to a fanout exchange it listens to (Celery's remote control, taskkit's
    broadcasts), passes :meth:`screen` before kombu parses it (``_brpop_read`` and
    ``_receive_one``, which parse and deliver in one step).

    An item :meth:`screen` refuses reads as an empty pop, and a published message
    as one without data: kombu reads on.
    """

    client: Any

    def _brpop_read(self, **options: Any) -> Any:
        client = self.client
        read = client.parse_response

        def screened(*args: Any, **kwargs: Any) -> Any:
            reply = read(*args, **kwargs)
            return reply if not reply or self.screen(*reply) else None

        client.parse_response = screened
        try:
            return cast(Any, super())._brpop_read(**options)
        finally:
            del client.parse_response

    def _handle_message(self, client: Any, response: Any) -> Any:
        message = cast(Any, super())._handle_message(client, response)
        data = message.get("data")
        published = bytes_to_str(message.get("type")).endswith("message")
        if published and data and isinstance(data, bytes):  # not decoded by kombu's client
            return message if self.screen(message["channel"], data) else {**message, "data": None}
        return message

    def screen(self, key: bytes, item: bytes) -> bool:
        """Whether kombu may parse and deliver ``item``, popped from the list ``key`` or
        published to the channel ``key``."""
        return True


class RedisRestoreHooks:
    """Mixed in before kombu's Redis QoS: each entry of its unacknowledged messages (``[envelope,
    exchange, routing_key]``, kept while a worker holds the message) passes :meth:`screen_entry`
    before kombu parses it to put the message back (``restore_by_tag``, which parses and
    restores in one transaction).

    An entry :meth:`screen_entry` refuses is removed, and nothing is restored from it.
    """

    channel: Any
    unacked_key: str

    def restore_by_tag(self, tag: Any, client: Any = None, leftmost: bool = False) -> None:
        with self.channel.conn_or_acquire(client) as connection:
            entry = connection.hget(self.unacked_key, tag)
            if entry is not None and not self.screen_entry(connection, entry):
                cast(Any, self)._remove_from_indices(tag).execute()
                return
        cast(Any, super()).restore_by_tag(tag, client, leftmost)

    def screen_entry(self, client: Any, entry: bytes) -> bool:
        """Whether kombu may parse and restore the unacknowledged entry ``entry``."""
        return True


def use_transport(alias: str, path: str) -> None:
    """Make kombu build connections to ``alias://`` URLs with the transport class at ``path``.

    kombu keeps the class it resolved for an alias (``_transport_cache``): it is
    forgotten, so connections made from now on use ``path``.
    """
    TRANSPORT_ALIASES[alias] = path
    kombu.transport._transport_cache.pop(alias, None)  # type: ignore[attr-defined]


class FilesystemChannel(filesystem.Channel):
    """kombu's filesystem channel with its message write behind :meth:`put_message`."""

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self.put_message(queue, message)

    def put_message(self, queue: str, message: Any) -> None:
        """Store ``message`` in ``queue``; a subclass decides how."""
        super()._put(queue, message)

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        return self.take_message(queue)

    def take_message(self, queue: str) -> Any:
        """The next message of ``queue``, parsed (``Empty`` if none); a subclass decides how."""
        return super()._get(queue)


# --- django-celery-beat and Celery's Beat ------------------------------------------------


class BeatHooks:
    """Mixed in before django-celery-beat's ``DatabaseScheduler``: its private parts, named.

    A mixin, not a subclass, so importing this module needs no Django models.
    """

    _heap: list[Any] | None
    _initial_read: bool
    _tasks_since_sync: int

    def _get_crontab_exclude_query(self) -> Q:
        return self.crontab_exclude_query()

    def crontab_exclude_query(self) -> Q:
        """The crontab rows *not* loaded; a subclass may load more."""
        return cast(Q, cast(Any, super())._get_crontab_exclude_query())

    @property
    def heap(self) -> list[Any]:
        """Beat's heap of ``(when, priority, entry)`` events, as ``populate_heap`` left it."""
        return list(self._heap or [])

    @heap.setter
    def heap(self, events: list[Any]) -> None:
        self._heap = events

    def when(self, entry: Any, next_time_to_run: float) -> float:
        """The heap time of an entry due in ``next_time_to_run`` seconds."""
        return float(cast(Any, self)._when(entry, next_time_to_run))

    def reread_schedule(self) -> None:
        """Read the schedule from the database afresh, and rebuild the heap, on the next tick."""
        self._initial_read = True
        self._heap = None

    def count_sent(self) -> None:
        """Count one sent tick towards ``sync_every_tasks`` (saving ``last_run_at``)."""
        self._tasks_since_sync += 1
