"""The byte sieve lets every matching message through, and stops others undecoded."""

from __future__ import annotations

import binascii
import json
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from kombu import Connection, serialization
from kombu.utils.json import dumps

from taskkit.queues.messages import decode
from taskkit.queues.sieve import EVERYTHING, Sieve, _base64_shapes

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(), values, max_size=6)


def raw_message(name: str, run_id: str, payload: dict[str, Any]) -> bytes:
    """A message as kombu's Redis and filesystem transports store it."""
    kwargs = {"payload": payload, "context": {"run_id": run_id, "attempt": 1}}
    content_type, encoding, body = serialization.dumps(([], kwargs, {}), serializer="json")
    with Connection("memory://") as connection:
        channel: Any = connection.default_channel
        message = channel.prepare_message(
            body, 0, content_type, encoding, {"task": name, "id": run_id}, {}
        )
        channel._inplace_augment_message(message, "", "default")
    return dumps(message).encode()


@given(payloads)
def test_every_matching_message_passes(payload: dict[str, Any]) -> None:
    run_id = str(uuid.uuid4())
    raw = raw_message("echo:payload", run_id, payload)
    assert decode(raw, "default").payload == payload
    assert Sieve.for_(run_id=run_id, name="echo:payload", payload=payload).passes(raw)
    assert Sieve.for_(payload=payload).passes(raw)


@given(st.binary(), st.binary(min_size=1), st.binary())
def test_a_needle_reads_in_one_of_its_base64_shapes_wherever_it_lies(
    before: bytes, needle: bytes, after: bytes
) -> None:
    text = binascii.b2a_base64(before + needle + after, newline=False)
    shape = _base64_shapes(needle)[len(before) % 3]
    assert shape in text
    assert text.find(shape) <= len(before) * 4 // 3 + 1


def test_base64_shapes_of_a_pair() -> None:
    """Each shape is the whole needle but for at most one partial character at each end."""
    shapes = _base64_shapes(b'"user": "ada"')
    assert [len(shape) for shape in shapes] == [17, 16, 17]
    assert binascii.a2b_base64(shapes[0][:16]) == b'"user": "ada'


def test_other_messages_are_stopped() -> None:
    run_id = str(uuid.uuid4())
    raw = raw_message("echo:payload", run_id, {"user": "ada", "tags": ["a", "b"], "n": 7})
    assert EVERYTHING.passes(raw)
    assert not Sieve.for_(run_id=str(uuid.uuid4())).passes(raw)
    assert not Sieve.for_(name="db:migrate").passes(raw)
    assert not Sieve.for_(name="echo").passes(raw)  # the whole name, not a prefix
    assert not Sieve.for_(payload={"user": "grace"}).passes(raw)
    assert not Sieve.for_(payload={"tags": ["a", "c"], "n": 7}).passes(raw)
    assert Sieve.for_(payload={"user": "ada", "n": 8}).passes(raw)  # a pass: decoding decides


def test_payloads_whose_spelling_depends_on_key_order_are_not_sieved() -> None:
    assert Sieve.for_(payload={"config": {"a": 1, "b": 2}}) == EVERYTHING
    assert Sieve.for_(payload={}) == EVERYTHING
    assert Sieve.for_(payload={"n": 1, "config": {}}).in_body == b'"n": 1'


def test_a_body_that_is_not_base64_always_passes() -> None:
    """A body kombu did not encode is JSON text: it cannot be base64, so it is never sieved."""
    envelope = json.loads(raw_message("echo:payload", str(uuid.uuid4()), {"user": "ada"}))
    kwargs = {"payload": {"user": "ada"}, "context": {"run_id": "r"}}
    envelope["body"] = json.dumps([[], kwargs, {}])
    del envelope["properties"]["body_encoding"]
    raw = dumps(envelope).encode()
    assert decode(raw, "default").payload == {"user": "ada"}
    assert Sieve.for_(name="echo:payload", payload={"user": "grace"}).passes(raw)


@given(st.lists(payloads, min_size=1, max_size=5), st.data())
def test_a_chunk_holding_a_matching_message_passes(
    chunk_payloads: list[dict[str, Any]], data: st.DataObject
) -> None:
    ids = [str(uuid.uuid4()) for _ in chunk_payloads]
    chunk = [raw_message("echo:payload", i, p) for i, p in zip(ids, chunk_payloads, strict=True)]
    wanted = data.draw(st.sampled_from(ids))
    assert Sieve.for_(run_id=wanted).chunk_passes(chunk)
    assert Sieve.for_(run_id=wanted, name="echo:payload").chunk_passes(chunk)


def test_a_chunk_without_a_needle_is_stopped_whole() -> None:
    chunk = [raw_message("echo:payload", str(uuid.uuid4()), {"n": n}) for n in range(3)]
    assert not Sieve.for_(run_id=str(uuid.uuid4())).chunk_passes(chunk)
    assert not Sieve.for_(name="db:migrate").chunk_passes(chunk)
    assert EVERYTHING.chunk_passes(chunk)
    # a payload needle is looked for message by message: the chunk is let through
    assert Sieve.for_(name="db:migrate", payload={"n": 9}).chunk_passes(chunk)
