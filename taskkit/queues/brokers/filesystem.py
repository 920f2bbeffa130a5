"""The embedded broker (kombu's filesystem transport): a file per message.

Messages are taken in the order of the file names; removing a message removes
its file.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from kombu import Connection

from ...quarantine import read_file, unreadable
from ..messages import QueuedMessage, decode, malformed
from ..sieve import EVERYTHING, Sieve
from .base import BrokerMemory, Match, celery_own


class FilesystemBroker:
    name = "filesystem"
    listable = True

    def __init__(self, connection: Connection) -> None:
        options = connection.transport_options or {}
        self.folder = Path(options.get("data_folder_in") or options.get("data_folder_out") or ".")

    def _names(self) -> list[str]:
        try:
            return [path.name for path in self.folder.iterdir()]
        except FileNotFoundError:
            return []

    def _files(self, queue: str) -> list[str]:
        """The queue's message files, in the order kombu's reader takes them."""
        return sorted(name for name in self._names() if name.partition(".")[2] == f"{queue}.msg")

    def queues(self) -> set[str]:
        found = {
            name.partition(".")[2].removesuffix(".msg")
            for name in self._names()
            if name.endswith(".msg") and not name.startswith(".")
        }
        return {queue for queue in found if not celery_own(queue)}

    def length(self, queue: str) -> int:
        return len(self._files(queue))

    def scan(
        self, queue: str, start: int = 0, sieve: Sieve = EVERYTHING
    ) -> Iterator[QueuedMessage]:
        for position, name in enumerate(self._files(queue)[start:], start=start):
            path = self.folder / name
            try:
                raw = read_file(path)
            except FileNotFoundError:  # a worker took it meanwhile
                continue
            except OSError as exc:  # shown, under its name, so that it can be deleted
                yield malformed(name.encode(), queue, position, str(path), unreadable(exc))
                continue
            if sieve.passes(raw):
                yield decode(raw, queue, position, str(path))

    def delete(self, queue: str, match: Match, sieve: Sieve = EVERYTHING, limit: int = 0) -> int:
        removed = 0
        for message in self.scan(queue, sieve=sieve):
            if match(message) and _unlink(Path(message.location)):
                removed += 1
                if removed == limit:
                    break
        return removed

    def held(self, sieve: Sieve = EVERYTHING) -> Iterator[QueuedMessage]:
        return iter(())  # a worker deletes the file as it takes the message

    def purge(self, queue: str) -> int:
        return sum(_unlink(self.folder / name) for name in self._files(queue))

    def memory(self) -> BrokerMemory | None:
        return None


def _unlink(path: Path) -> bool:
    """Remove ``path``; ``False`` if a worker took it first."""
    try:
        if path.is_dir():  # put there by hand, named like a message
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    return True
