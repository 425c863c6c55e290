"""Large pickle ``bytes`` values received straight into a bytes object of their own (protocol.SplitBody).

The pickle splitter parses the opcodes in front of the value (never runs them); the value then comes
back as the very object the socket filled: as it is for a result of just the bytes, else through a
protocol-5 out-of-band buffer in the value's place.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import pytest

from pyroplug.core import errors, protocol
from pyroplug.core.config import Config
from pyroplug.core.protocol import FLAGS_ONEWAY, MSG_INVOKE, MSG_RESULT, MessageReader, SplitBody, encode
from pyroplug.core.registry import get_registry
from pyroplug.plugins.serializers.pickle import PickleSerializer, _locate_bytes
from tests.core.splitting import echo_daemon, large_round_trips, read_in_pieces

get_registry()  # the plugins' hooks ran: the pickle splitter is registered

pytestmark = pytest.mark.skipif(protocol._writable_bytes is None, reason="no split receives on this interpreter")

BIG = os.urandom(protocol.SPLIT_THRESHOLD + 4321)


def serializer(protocol_version: int = pickle.HIGHEST_PROTOCOL) -> PickleSerializer:
    config = Config()
    config.PICKLE_PROTOCOL_VERSION = protocol_version
    return PickleSerializer(config)


SER = serializer()
SID = SER.serializer_id


@pytest.mark.parametrize("version", [3, 4, 5])
@pytest.mark.parametrize("seed", range(3))
def test_result_value_is_received_apart_and_handed_out_as_is(version: int, seed: int) -> None:
    ser = serializer(version)
    after = encode(MSG_RESULT, ser.dumps("next"), SID, seq=2)
    wire = encode(MSG_RESULT, ser.dumps(BIG), SID, seq=1, annotations={"CORR": bytes(16)}) + after
    big, small = read_in_pieces(wire, seed)
    assert type(big.data) is SplitBody and bytes(big.data) == ser.dumps(BIG)
    value = ser.loads(big.data)
    assert type(value) is bytes and value == BIG
    assert value is big.data.value  # no copy
    assert ser.loads(small.data) == "next"


@pytest.mark.parametrize("version", [3, 4, 5])
@pytest.mark.parametrize(
    ("vargs", "kwargs"),
    [
        ((BIG,), {}),
        ((1, "two", BIG), {}),
        ((BIG, [1, 2], {"x": 1.5}, None), {"k": "v", "n": [BIG[:10]]}),
        ((b"small", ("nested", [BIG]), 2**70), {}),
        (("a" * 70_000, BIG, b"tail"), {}),  # the value starts beyond the first 64 KiB: not split
    ],
)
def test_call_with_a_large_bytes_argument(version: int, vargs: tuple, kwargs: dict) -> None:
    ser = serializer(version)
    payload = ser.dumps_call("obj", "echo", vargs, kwargs)
    for msg in read_in_pieces(encode(MSG_INVOKE, payload, SID, FLAGS_ONEWAY, 7) * 2, version):
        obj, method, args, kw = ser.loads_call(msg.data)
        assert (obj, method, list(args), kw) == ("obj", "echo", list(vargs), kwargs)
        assert ser.loads_call(msg.data) == ser.loads_call(payload)
        if type(vargs[0]) is not str:
            assert type(msg.data) is SplitBody
            assert msg.data.value is _find_big(args)
        assert msg.flags == FLAGS_ONEWAY and msg.seq == 7


def _find_big(value: Any) -> Any:
    if type(value) is bytes and len(value) >= protocol.SPLIT_THRESHOLD:
        return value
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _find_big(item)
            if found is not None:
                return found
    return None


@pytest.mark.parametrize("case", ["small", "protocol2", "exception", "compressed", "other_serializer"])
def test_messages_that_are_not_split(case: str) -> None:
    data: Any = BIG
    flags, sid, ser = 0, SID, SER
    if case == "small":
        data = BIG[: protocol.SPLIT_THRESHOLD - 100]
    elif case == "protocol2":  # bytes pickled through _codecs.encode
        ser = serializer(2)
    elif case == "exception":
        flags = protocol.FLAGS_EXCEPTION
    elif case == "other_serializer":
        sid = 1
    elif case == "compressed":
        data = os.urandom(10) * 200_000
    wire = encode(MSG_RESULT, ser.dumps(data), sid, flags, compress=case == "compressed")
    (msg,) = read_in_pieces(wire, 1, MessageReader())
    assert type(msg.data) is not SplitBody
    assert ser.loads(msg.data) == data


def test_the_locator_only_finds_large_values_at_opcode_boundaries() -> None:
    payload = SER.dumps_call("obj", "m", (b"B" + (2 << 20).to_bytes(4, "little"), BIG), {})
    offset, length = _locate_bytes(MSG_INVOKE, memoryview(payload[:65536]), len(payload))  # type: ignore[misc]
    assert payload[offset : offset + length] == BIG  # not the look-alike inside the first argument
    framed = bytearray(SER.dumps_call("obj", "m", (1,), {}))
    assert _locate_bytes(MSG_INVOKE, memoryview(bytes(framed)), len(framed)) is None  # no large value
    assert _locate_bytes(MSG_RESULT, memoryview(b"not a pickle" * 10), 10 << 20) is None
    assert _locate_bytes(MSG_RESULT, memoryview(pickle.dumps(BIG, 2)[:1000]), 10 << 20) is None


def test_corrupt_split_payloads_are_serialize_errors() -> None:
    head = SER.dumps_call("obj", "m", (BIG,), {})[:40]
    cut = head[: head.index(b"B" + len(BIG).to_bytes(4, "little")) + 5]
    bad = [
        SplitBody(cut, BIG, b""),  # nothing after the value
        SplitBody(cut[:-5] + b"X" + cut[-4:], BIG, b"\x94."),  # not a BINBYTES in front of it
        SplitBody(b"\x80\x05(", BIG, b"t."),  # too short a head
        SplitBody(cut, BIG, b"\x94\x85\x94}\x94\xff."),  # an unknown opcode after it
    ]
    for body in bad:
        with pytest.raises(errors.SerializeError):
            SER.loads_call(body)


# ---- over real sockets ---------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("servertype", ["thread", "multiplex"])
def test_large_pickle_bytes_round_trip_over_a_socket(servertype: str) -> None:
    with echo_daemon(servertype, "pickle") as uri:
        large_round_trips(uri, "pickle")
        from pyroplug.core.proxy import Proxy

        with Proxy(uri) as proxy:  # nested: the value goes back through an out-of-band buffer
            proxy._pyroSerializer = "pickle"
            assert proxy.echo(("t", [BIG])) == ("t", [BIG])
