"""Cheap byte checks that rule a queued message out before it is decoded.

Decoding a message (its JSON envelope, then the JSON in its base64 body) costs
several times more than reading it from Redis, so a scan for one run, one task
or one payload would spend nearly all its time decoding messages it then
drops. A sieve looks for bytes that every matching message must hold:

- the run id, as it stands in the envelope's headers;
- the task name as a JSON string, as the headers hold it (``"task"``, or
  ``"shadow"`` for a task carried by another Celery task);
- one top-level ``"key": value`` pair of the payload, in the base64 body,
  looked for in the three shapes base64 gives it (one per offset modulo 3), so
  the body is neither decoded nor parsed.

Each needle is written by kombu's own JSON encoder, so it is spelled as the
message is. A sieve only ever says "cannot match"; whatever passes it is
decoded and compared in full, so a needless pass costs time, never an answer.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kombu.utils.json import dumps

SCALARS = (str, int, float, bool, type(None))


def _pair(key: str, value: Any) -> bytes:
    """``"key": value`` exactly as kombu writes it inside an object."""
    return dumps({key: value}).encode()[1:-1]


BODY_START = _pair("body", "")[:-1]  # "body": "
BODY_FROM = len(BODY_START)
#: The first character of a JSON array's base64: ``[`` is ``0x5B``, its first six bits ``W``.
BASE64_ARRAY = ord("W")


def _base64_shapes(needle: bytes) -> tuple[bytes, ...]:
    """How ``needle`` reads inside any base64 text, one shape per offset modulo 3.

    base64 turns each 3 bytes into 4 characters, so bytes at offset ``3k + shift``
    are always spelled the same way, except for the characters they share with
    their neighbours: those are cut off.
    """
    shapes = []
    for shift in range(3):
        text = binascii.b2a_base64(bytes(shift) + needle, newline=False)
        first = -(-8 * shift // 6)  # the first character made of needle bits only
        last = (8 * (shift + len(needle)) - 6) // 6  # and the last one
        shapes.append(text[first : last + 1])
    return tuple(shapes)


def _payload_needle(payload: Mapping[str, Any]) -> bytes | None:
    """The longest top-level pair whose spelling does not depend on key order."""
    pairs = [
        _pair(key, value)
        for key, value in payload.items()
        if isinstance(value, SCALARS)
        or (isinstance(value, list) and all(isinstance(item, SCALARS) for item in value))
    ]
    return max(pairs, key=len, default=None)  # the longest: the fewest false passes


@dataclass(frozen=True, slots=True)
class Sieve:
    """Rules out raw messages that cannot be of ``run_id``, ``name`` or ``payload``."""

    #: Needles in the envelope as it is.
    plain: tuple[bytes, ...] = ()
    #: A needle in the body, base64 undone.
    in_body: bytes | None = None
    #: ``in_body`` as base64 spells it: three shapes, or none.
    body_shapes: tuple[bytes, ...] = ()

    @classmethod
    def for_(
        cls,
        *,
        run_id: str | None = None,
        name: str | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> Sieve:
        plain = []
        if run_id is not None:
            plain.append(run_id.encode())
        if name is not None:
            plain.append(dumps(name).encode())  # as "task" or, for a carried task, "shadow"
        needle = _payload_needle(payload) if payload is not None else None
        return cls(tuple(plain), needle, _base64_shapes(needle) if needle else ())

    def chunk_passes(self, chunk: list[bytes]) -> bool:
        """``False`` only when no message of ``chunk`` can match: a needle of the envelope
        is nowhere in it (one search of the joined chunk, not one per message).

        A sieve with a payload needle sieves each message's body anyway: it says yes.
        """
        if not self.plain or self.body_shapes:
            return True
        joined = b"\n".join(chunk)  # no needle holds a newline: none spans two messages
        return all(needle in joined for needle in self.plain)

    def passes(self, raw: bytes) -> bool:
        """``False`` only when the message in ``raw`` cannot match.

        Only a body that reads as base64 JSON (``W``, the base64 of ``[``, first)
        is sieved: one kombu did not encode is JSON text, which starts ``[``, and
        any other body is not Celery's. A body with no closing quote is not JSON:
        nothing to match.
        """
        after = 0
        shapes = self.body_shapes
        if shapes and (start := raw.find(BODY_START)) >= 0:
            start += BODY_FROM
            end = raw.find(b'"', start)
            if end < 0:
                return False
            if raw[start] == BASE64_ARRAY:  # one index, not a search for a backslash
                # Called for every message a scan reads: no loop, no generator.
                first, second, third = shapes  # one per offset modulo 3
                if (
                    raw.find(first, start, end) < 0
                    and raw.find(second, start, end) < 0
                    and raw.find(third, start, end) < 0
                ):
                    return False
                after = end  # the headers come after the body: not looked through again
        for needle in self.plain:  # noqa: SIM110 - a generator per message costs
            if raw.find(needle, after) < 0:
                return False
        return True


#: The sieve that lets everything through.
EVERYTHING = Sieve()
