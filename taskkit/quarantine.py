"""The quarantine: where a worker puts a broker item it cannot take, instead of dying on it.

kombu reads each item of a Redis list or of the embedded broker's folder as a
JSON envelope before Celery or taskkit see it. Raw bytes that are no JSON, or
JSON that is no envelope, made kombu raise in the worker's main process: the
worker went down, and the item was lost or put back to kill the next one.
taskkit's transports (:mod:`taskkit.redis_transport`, :mod:`taskkit.embedded`)
check each item first with :func:`problem`; an item that fails is moved,
byte for byte, to the queue :data:`QUARANTINE` on the same broker, and the
worker goes on. ``taskqueue list taskkit.quarantine`` and the admin's queue
page show it with what is wrong with it; ``taskqueue del-run`` removes it.

Items are parsed with kombu's own JSON decoder, as kombu reads them: it turns
``{"__type__": …, "__value__": …}`` objects into Python values (dates, UUIDs,
bytes …), and raises ``TypeError`` or ``ValueError`` on a malformed one, in
JSON the standard library reads without complaint. They must be UTF-8: kombu's
Redis transport would replace the bytes that are not, and run an altered message.

No Django: the embedded transport imports it from Django's settings module.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import logging
import stat
import uuid
from pathlib import Path
from typing import Any

from kombu.utils.json import loads

#: The queue malformed items are moved to (never consumed, never enqueued to).
QUARANTINE = "taskkit.quarantine"
#: The header of a message the worker's consumer copied there, saying why.
PROBLEM_HEADER = "taskkit-problem"

logger = logging.getLogger("taskkit.worker")


def problem(raw: bytes | str) -> str | None:
    """What keeps a worker from taking the broker item ``raw``; ``None`` if nothing does.

    The item must be kombu's JSON envelope: an object with ``properties``
    holding a ``delivery_tag`` and a ``delivery_info`` with its exchange and
    routing key, optional ``headers`` that are an object, and a ``body`` that
    decodes as its ``body_encoding`` and ``content-type`` say (JSON bodies are
    parsed). What Celery can read but taskkit cannot run (a body that is no
    task call) is a failed run instead, with its run id.
    """
    found = read(raw)
    return found if isinstance(found, str) else None


def read(raw: bytes | str) -> dict[str, Any] | str:
    """The broker item ``raw`` as kombu reads it (its envelope), or what is wrong with it."""
    try:
        envelope = _decode(raw)
    except Exception as exc:  # any error of the decoder: see the module's doc
        return f"not JSON ({type(exc).__name__}: {str(exc)[:200]})"
    if not isinstance(envelope, dict):
        return f"not a kombu envelope: a JSON {type(envelope).__name__}, not an object"
    return _envelope_problem(envelope) or envelope


def entry_problem(raw: bytes | str) -> str | None:
    """What keeps kombu from putting back an entry of its Redis transport's unacknowledged
    messages (``[envelope, exchange, routing_key]``); ``None`` if nothing does."""
    try:
        entry = _decode(raw)
    except Exception as exc:  # any error of the decoder
        return f"not JSON ({type(exc).__name__}: {str(exc)[:200]})"
    if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], dict)):
        return "not an unacknowledged message: no [envelope, exchange, routing key]"
    if not all(isinstance(part, str) for part in entry[1:]):
        return "not an unacknowledged message: its exchange or routing key is no string"
    return _envelope_problem(entry[0])


def _decode(text: bytes | str) -> Any:
    """JSON as kombu decodes it (UTF-8, its typed values); raises what the decoder raises."""
    return loads(text.decode("utf-8") if isinstance(text, bytes) else text)


def _envelope_problem(envelope: dict[str, Any]) -> str | None:
    properties = envelope.get("properties")
    if not isinstance(properties, dict) or "delivery_tag" not in properties:
        return "not a kombu envelope: no properties with a delivery_tag"
    delivery = properties.get("delivery_info")
    if not isinstance(delivery, dict) or not {"exchange", "routing_key"} <= delivery.keys():
        return "not a kombu envelope: no delivery_info with an exchange and a routing_key"
    if not isinstance(envelope.get("headers") or {}, dict):
        return "not a kombu envelope: its headers are not an object"
    return _body_problem(envelope, properties)


def _body_problem(envelope: dict[str, Any], properties: dict[str, Any]) -> str | None:
    body = envelope.get("body")
    encoding = properties.get("body_encoding")
    if encoding and (not isinstance(encoding, str) or encoding.lower() not in ("utf-8", "base64")):
        return f"its body_encoding {str(encoding)[:50]!r} is neither base64 nor utf-8"
    if encoding == "base64":
        if not isinstance(body, str):
            return "its base64 body is not a string"
        try:
            body = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return "its body is not valid base64"
    if "json" not in str(envelope.get("content-type", "")):
        return None  # Celery decodes other content types (or refuses them, and logs it)
    if not isinstance(body, str | bytes):
        return "its JSON body is not text"
    try:
        _decode(body)
    except Exception as exc:  # any error of the decoder
        return f"its body is not JSON ({type(exc).__name__}: {str(exc)[:200]})"
    return None


def item_id(raw: bytes) -> str:
    """An id for an item that has no run id of its own: a UUID made of its bytes' hash."""
    return str(uuid.UUID(bytes=hashlib.sha256(raw).digest()[:16]))


def read_file(path: Path) -> bytes:
    """The bytes of an item of the embedded broker's folder; ``OSError`` if it cannot be read.

    Only a regular file is read: a FIFO named like a message would block its reader (a
    worker, a listing) for good, and a symbolic link could point anywhere (``/dev/zero``).
    """
    mode = path.lstat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a directory: read_bytes says so
        raise OSError(errno.EINVAL, "not a regular file")
    return path.read_bytes()


def unreadable(exc: OSError) -> str:
    """The problem of an item of the embedded broker's folder that cannot be read."""
    return f"cannot be read: {exc.strerror or exc}"


def report(queue: str, raw: bytes, why: str) -> None:
    """Log one quarantined item (its id, where it came from, why, and how it starts)."""
    logger.error(
        "a malformed item in queue %s was moved to %s as %s: %s; it begins %r",
        queue,
        QUARANTINE,
        item_id(raw),
        why,
        raw[:200],
    )
