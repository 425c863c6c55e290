"""Large msgpack ``bytes`` values received straight into a bytes object of their own (protocol.SplitBody)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pyroplug.core import errors, protocol
from pyroplug.core.config import Config
from pyroplug.core.protocol import (
    FLAGS_EXCEPTION,
    FLAGS_ONEWAY,
    MSG_INVOKE,
    MSG_RESULT,
    MessageReader,
    SplitBody,
    encode,
)
from tests.core.splitting import echo_daemon, large_round_trips, read_in_pieces

msgpack = pytest.importorskip("msgpack")
from pyroplug.plugins.serializers.msgpack import MsgpackSerializer  # noqa: E402

pytestmark = pytest.mark.skipif(protocol._writable_bytes is None, reason="no split receives on this interpreter")

SER = MsgpackSerializer(Config())
SID = SER.serializer_id
BIG = os.urandom(protocol.SPLIT_THRESHOLD + 4321)
CORR = bytes(range(16))


@pytest.mark.parametrize("seed", range(4))
def test_result_value_is_received_apart_and_handed_out_as_is(seed: int) -> None:
    after = encode(MSG_RESULT, SER.dumps("next"), SID, seq=2)
    wire = encode(MSG_RESULT, SER.dumps(BIG), SID, seq=1, annotations={"CORR": CORR}) + after
    big, small = read_in_pieces(wire, seed)
    assert type(big.data) is SplitBody and big.annotations == {"CORR": CORR} and big.seq == 1
    assert len(big.data) == len(SER.dumps(BIG)) and bytes(big.data) == SER.dumps(BIG)
    value = SER.loads(big.data)
    assert type(value) is bytes and value == BIG
    assert value is big.data.value  # no copy
    assert SER.loads(small.data) == "next"


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    ("vargs", "kwargs"),
    [
        ((BIG,), {}),
        ((1, "two", BIG), {}),
        ((BIG, [1, 2], {"x": 1.5}, None), {"k": "v", "n": [BIG[:10]]}),
        (("a" * 70_000, BIG, b"tail"), {}),  # the value starts beyond the first read
    ],
)
def test_call_with_a_large_bytes_argument(seed: int, vargs: tuple, kwargs: dict) -> None:
    payload = SER.dumps_call("obj", "echo", vargs, kwargs)
    msgs = read_in_pieces(encode(MSG_INVOKE, payload, SID, FLAGS_ONEWAY, 7) * 2, seed)
    for msg in msgs:
        obj, method, args, kw = SER.loads_call(msg.data)
        assert (obj, method, list(args), kw) == ("obj", "echo", list(vargs), kwargs)
        if type(vargs[0]) is not str:  # split when the value starts within the first 64 KiB
            assert type(msg.data) is SplitBody
            assert any(arg is msg.data.value for arg in args)
        assert msg.flags == FLAGS_ONEWAY and msg.seq == 7


def test_split_matches_the_unsplit_decoding_exactly() -> None:
    value = (3, BIG, {"a": [1, 2]}, 2**70, complex(1, 2))
    payload = SER.dumps_call("o", "m", value, {"kw": b"x"})
    (msg,) = read_in_pieces(encode(MSG_INVOKE, payload, SID), 0)
    assert type(msg.data) is SplitBody
    assert SER.loads_call(msg.data) == SER.loads_call(payload)


@pytest.mark.parametrize(
    "case",
    ["small", "nested", "two_values", "exception", "compressed", "hmac", "hmac_annotation", "other_serializer"],
)
def test_messages_that_are_not_split(case: str) -> None:
    reader = MessageReader()
    data: Any = BIG
    flags = 0
    key = None
    annotations = None
    sid = SID
    if case == "small":
        data = BIG[: protocol.SPLIT_THRESHOLD - 100]
    elif case == "nested":
        data = [BIG]
    elif case == "two_values":
        data = {"a": BIG}
    elif case == "exception":
        flags = FLAGS_EXCEPTION
    elif case == "hmac":
        key = reader.hmac_key = b"secret"
    elif case == "hmac_annotation":
        annotations = {"HMAC": b"x" * 20}
    elif case == "other_serializer":
        sid = 3
    elif case == "compressed":
        data = os.urandom(10) * 200_000  # compressible
    wire = encode(MSG_RESULT, SER.dumps(data), sid, flags, annotations=annotations, hmac_key=key,
                  compress=case == "compressed")
    if case == "hmac_annotation":
        with pytest.raises(errors.SecurityError):
            read_in_pieces(wire, 1, reader)
        return
    (msg,) = read_in_pieces(wire, 1, reader)
    assert type(msg.data) is not SplitBody
    assert SER.loads(msg.data) == data


def test_corrupt_split_payloads_are_serialize_errors() -> None:
    value = msgpack.packb(BIG, use_bin_type=True)
    head = msgpack.packb(["obj", "m"], use_bin_type=True)  # a 2-array
    bad = [
        SplitBody(b"\x94\xa3obj\xa1m\x92" + value[:5], BIG, b""),  # the kwargs are missing
        SplitBody(b"\x94\xa3obj\xa1m\x91" + value[:5], BIG, b"\x80\x01"),  # extra data
        SplitBody(b"\x93\xa3obj\xa1m\x91" + value[:5], BIG, b"\x80"),  # not a call array
        SplitBody(head + value[:5], BIG, b""),
    ]
    for body in bad:
        with pytest.raises(errors.SerializeError):
            SER.loads_call(body)


def test_split_body_behaves_like_its_bytes() -> None:
    body = SplitBody(b"ab", b"cde", b"f")
    assert len(body) == 6 and bytes(body) == b"abcdef" == body.tobytes()
    assert body[1:4] == b"bcd" and body == b"abcdef" and body == SplitBody(b"a", b"bcdef", b"")
    assert body != 6 and body != "abcdef" and body == memoryview(b"abcdef")
    assert "value=3" in repr(body)


# ---- over real sockets ---------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("servertype", ["thread", "multiplex"])
def test_large_msgpack_bytes_round_trip_over_a_socket(servertype: str) -> None:
    with echo_daemon(servertype, "msgpack") as uri:
        large_round_trips(uri, "msgpack")
