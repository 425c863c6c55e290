"""Zero-copy sends of large bytes (pyroplug.core.gather) and the large-body buffers of the reader."""

from __future__ import annotations

import os

import pytest

from pyroplug.core import gather, protocol
from pyroplug.core.config import Config
from pyroplug.core.protocol import MSG_INVOKE, MessageReader, encode_gather, encode_parts
from pyroplug.core.registry import get_registry

BIG = os.urandom(gather.THRESHOLD + 12345)


def serializer(name: str):  # noqa: ANN201 - a serializer plugin instance
    try:
        return get_registry().serializer(name)(Config())
    except Exception as exc:  # noqa: BLE001 - msgpack is optional
        pytest.skip(f"{name}: {exc}")


@pytest.mark.parametrize("name", ["marshal", "pickle", "msgpack"])
def test_spliced_call_and_value_are_the_serializers_own_bytes(name: str) -> None:
    ser = serializer(name)
    parts = gather.call_parts(ser, "obj", "echo", (1, BIG, "x"), {"k": 2})
    assert parts is not None and parts[1] is BIG  # the value itself, not a copy
    assert b"".join(parts) == ser.dumps_call("obj", "echo", (1, BIG, "x"), {"k": 2})
    parts = gather.value_parts(ser, BIG)
    assert parts is not None and parts[1] is BIG
    assert b"".join(parts) == ser.dumps(BIG)


@pytest.mark.parametrize("name", ["json", "serpent"])
def test_text_formats_are_not_spliced(name: str) -> None:
    ser = serializer(name)
    assert gather.call_parts(ser, "obj", "echo", (BIG,), {}) is None
    assert gather.value_parts(ser, BIG) is None


def test_only_one_large_positional_bytes_is_spliced() -> None:
    ser = serializer("marshal")
    assert gather.call_parts(ser, "obj", "echo", (b"small",), {}) is None
    assert gather.call_parts(ser, "obj", "echo", (BIG, BIG), {}) is None
    assert gather.call_parts(ser, "obj", "echo", (bytearray(BIG),), {}) is None
    assert gather.value_parts(ser, b"small") is None


def test_a_serializer_that_frames_differently_falls_back() -> None:
    ser = serializer("marshal")
    ser.bytes_length_field = "big"  # a wrong claim: the placeholder's length field does not match
    assert gather.call_parts(ser, "obj", "echo", (BIG,), {}) is None


@pytest.mark.parametrize("hmac_key", [None, b"secret"])
@pytest.mark.parametrize("compress", [False, True])
def test_encode_gather_equals_encode_parts(hmac_key: bytes | None, compress: bool) -> None:
    parts = [b"head", BIG, b"tail"]
    head, out = encode_gather(MSG_INVOKE, parts, 3, 0, 9, {"CORR": b"c" * 16}, hmac_key, compress)
    head2, out2 = encode_parts(MSG_INVOKE, b"".join(parts), 3, 0, 9, {"CORR": b"c" * 16}, hmac_key, compress)
    assert head == head2 and b"".join(out) == bytes(out2)
    reader = MessageReader(hmac_key=hmac_key)
    reader.feed(head + b"".join(out))
    msg = reader.next_message()
    assert msg is not None and bytes(msg.data) == b"".join(parts)


def test_large_body_buffer_is_reused_once_released() -> None:
    protocol.big_buffers.clear()
    wire = protocol.encode(MSG_INVOKE, BIG, 3, 0, 1)
    reader = MessageReader()
    reader.feed(wire)
    msg = reader.next_message()
    assert msg is not None and bytes(msg.data) == BIG
    reader.recycle(msg)
    assert msg.data == b""
    assert protocol.big_buffers._bytes == len(BIG)  # kept for the next large body
    reader.feed(wire)
    again = reader.next_message()
    assert again is not None and bytes(again.data) == BIG
    assert protocol.big_buffers._bytes == 0  # taken again
    protocol.big_buffers.clear()


def test_large_body_buffer_still_in_use_is_not_reused() -> None:
    protocol.big_buffers.clear()
    wire = protocol.encode(MSG_INVOKE, BIG, 3, 0, 1)
    reader = MessageReader()
    reader.feed(wire)
    msg = reader.next_message()
    assert msg is not None
    kept = msg.data[10:20]  # a view somebody kept
    reader.recycle(msg)
    assert protocol.big_buffers._bytes == 0
    reader.feed(wire)
    again = reader.next_message()
    assert again is not None and bytes(again.data) == BIG
    assert bytes(kept) == BIG[10:20]
    protocol.big_buffers.clear()
