"""Single-flight: concurrent calls with one key share one execution.

Nitro runs one instance of a task per name; taskkit keys on name + canonical
payload, so different payloads still run side by side. Threads and asyncio
callers share the same flights: the leader's result or exception is handed to
every caller that joined while it ran.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class _Flight:
    owner: int  # thread that leads it
    future: Future[Any] = field(default_factory=Future)


class SingleFlight:
    """A table of executions in progress, keyed by whatever the caller chooses."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def _join(self, key: Hashable) -> tuple[_Flight, bool]:
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = _Flight(owner=threading.get_ident())
            return flight, True

    def _land(self, key: Hashable, flight: _Flight, outcome: Callable[[], Any]) -> Any:
        try:
            result = outcome()
        except BaseException as exc:
            with self._lock:
                del self._flights[key]
            flight.future.set_exception(exc)
            raise
        with self._lock:
            del self._flights[key]
        flight.future.set_result(result)
        return result

    def run(self, key: Hashable, function: Callable[[], Any]) -> Any:
        """Call ``function`` unless a call with ``key`` is in flight; then wait for that one."""
        flight, leader = self._join(key)
        if leader:
            return self._land(key, flight, function)
        if flight.owner == threading.get_ident():
            return function()  # a task calling itself: waiting on our own flight would deadlock
        return flight.future.result()

    async def arun(self, key: Hashable, function: Callable[[], Awaitable[Any]]) -> Any:
        """Async twin of :meth:`run`."""
        flight, leader = self._join(key)
        if not leader:
            # shield: a cancelled waiter must not cancel the run the others share
            return await asyncio.shield(asyncio.wrap_future(flight.future))
        try:
            result = await function()
        except BaseException as exc:
            error = exc
            return self._land(key, flight, lambda: _raise(error))
        return self._land(key, flight, lambda: result)


def _raise(error: BaseException) -> Any:
    raise error
