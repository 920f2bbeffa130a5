"""The embedded broker: kombu's filesystem transport, made safe for concurrent writers.

kombu's reader moves a message file away as soon as it is listed, even while a
writer is still filling it; the worker then fails on half a message. taskkit's
transport writes each message under a temporary name and renames it into place,
which is atomic, so a reader only ever sees whole messages. Readers take files
in name order, so names start with the time in nanoseconds and a per-process
sequence number: messages leave in the order they came. A file that holds no
envelope, or that cannot be read, is moved to the quarantine
(:mod:`taskkit.quarantine`), not fatal.

Use it through :func:`celery_settings` (no server, one machine, polling, no
acknowledgement: for development and demos, not production).
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

from .quarantine import QUARANTINE, read, read_file, report, unreadable
from .upstream import FilesystemChannel

_sequence = itertools.count()


class Channel(FilesystemChannel):
    """A filesystem channel whose writes are atomic and keep their order."""

    def put_message(self, queue: str, message: Any) -> None:
        folder = Path(self.data_folder_out)
        order = f"{time.time_ns():020d}_{next(_sequence):012d}"
        final = folder / f"{order}_{uuid.uuid4()}.{queue}.msg"
        partial = folder / f".partial-{uuid.uuid4()}"
        try:
            partial.write_bytes(str_to_bytes(dumps(message)))
            partial.replace(final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def take_message(self, queue: str) -> Any:
        """The oldest whole message of ``queue``; an item that is no envelope is quarantined.

        A reader claims a file by renaming it (atomic: two readers never get one
        message), then reads it. kombu's reader parsed it at once, and raised on
        a file that is not JSON: the worker went down, the message was gone.
        """
        folder = Path(self.data_folder_in)
        wanted = f"{queue}.msg"
        for name in sorted(path.name for path in folder.iterdir()):
            if name.partition(".")[2] != wanted:
                continue
            claimed = folder / f".taken-{uuid.uuid4()}"
            try:
                (folder / name).rename(claimed)
            except OSError:  # another reader took it first
                continue
            found: dict[str, Any] | str
            try:
                raw = read_file(claimed)
            except OSError as exc:  # a directory, a FIFO, a file the worker may not read
                raw, found = name.encode(), unreadable(exc)
            else:
                found = read(raw)  # the envelope, or what is wrong with it
            if not isinstance(found, str):
                claimed.unlink()
                return redelivered(found)
            claimed.replace(folder / f"{name.partition('.')[0]}.{QUARANTINE}.msg")
            report(queue, raw, found)
        raise Empty()


def redelivered(envelope: dict[str, Any]) -> dict[str, Any]:
    """``envelope``, told redelivered where Redis and RabbitMQ tell it, if it was put back.

    kombu marks a message put back (a rejected run's requeue) at the top of its
    envelope, where its ``Message`` does not look: Celery would take it for a
    first delivery, and never count the restarts of a run that kills its worker.
    """
    if envelope.pop("redelivered", False):
        envelope["properties"]["delivery_info"]["redelivered"] = True
    return envelope


class Transport(filesystem.Transport):
    """kombu's filesystem transport with :class:`Channel`."""

    Channel = Channel

    @property
    def default_connection_params(self) -> dict[str, Any]:
        """No default host: a folder has none. With kombu's (``localhost``), every
        connection to ``filesystem://`` warned that no hostname was supplied."""
        return {"port": self.default_port, "hostname": None}


def celery_settings(
    folder: str | os.PathLike[str], polling_interval: float = 0.1
) -> dict[str, Any]:
    """``CELERY_*`` settings for the embedded broker keeping its files in ``folder``.

    In a Django settings module: ``globals().update(celery_settings(BASE_DIR / "var/broker"))``.
    """
    root = Path(folder)
    for sub in ("queue", "processed", "control"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return {
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_TRANSPORT": f"{__name__}:Transport",
        "CELERY_BROKER_TRANSPORT_OPTIONS": {
            "data_folder_in": str(root / "queue"),
            "data_folder_out": str(root / "queue"),
            "processed_folder": str(root / "processed"),
            "control_folder": str(root / "control"),
            "store_processed": False,
            "polling_interval": polling_interval,
        },
    }
