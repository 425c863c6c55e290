"""The sans-IO wire codec: byte equality with Pyro4 4.82, incremental decoding, limits, HMAC, compression."""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import struct
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyroplug.core import errors, protocol
from pyroplug.core.protocol import (
    FLAGS_BATCH,
    FLAGS_COMPRESSED,
    FLAGS_EXCEPTION,
    FLAGS_ITEMSTREAMRESULT,
    FLAGS_KEEPSERIALIZED,
    FLAGS_META_ON_CONNECT,
    FLAGS_ONEWAY,
    HEADER_SIZE,
    MSG_CONNECT,
    MSG_CONNECTFAIL,
    MSG_CONNECTOK,
    MSG_INVOKE,
    MSG_PING,
    MSG_RESULT,
    MessageReader,
    encode,
    encode_parts,
)

Pyro4_message = pytest.importorskip("Pyro4.message")
PyroMessage = Pyro4_message.Message

ALL_FLAGS = (
    FLAGS_EXCEPTION,
    FLAGS_COMPRESSED,
    FLAGS_ONEWAY,
    FLAGS_BATCH,
    FLAGS_META_ON_CONNECT,
    FLAGS_ITEMSTREAMRESULT,
    FLAGS_KEEPSERIALIZED,
)
ALL_TYPES = (MSG_CONNECT, MSG_CONNECTOK, MSG_CONNECTFAIL, MSG_INVOKE, MSG_RESULT, MSG_PING)


# ---- helpers (independent of the code under test) ------------------------------------------
def raw_header(
    msgtype: int = MSG_INVOKE,
    flags: int = 0,
    seq: int = 0,
    size: int = 0,
    ser: int = 1,
    ann: int = 0,
    tag: bytes = b"PYRO",
    version: int = 48,
    checksum: int | None = None,
) -> bytes:
    """A header built straight from PYRO4-PROTOCOL.md 2.1/2.2, so it can also be made wrong on purpose."""
    if checksum is None:
        checksum = (msgtype + version + size + ann + ser + flags + seq + 0x34E9) & 0xFFFF
    return struct.pack("!4sHHHHiHHHH", tag, version, msgtype, flags, seq, size, ser, ann, 0, checksum)


def chunk(key: bytes, value: bytes) -> bytes:
    return struct.pack("!4sH", key, len(value)) + value


class FakeConnection:
    """What Pyro4's Message.recv reads from: recv(n) returns the next n bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def recv(self, n: int) -> bytes:
        piece = self.data[self.pos : self.pos + n]
        self.pos += n
        return piece

    def close(self) -> None:
        pass


def pyro4_bytes(msgtype, data, ser, flags=0, seq=0, annotations=None, hmac_key=None, compress=False) -> bytes:
    """The bytes stock Pyro4 4.82 puts on the wire (compression is done by its serializer layer)."""
    if compress and len(data) >= 200:
        packed = zlib.compress(data)
        if len(packed) < len(data):
            data = packed
            flags |= FLAGS_COMPRESSED
    return PyroMessage(msgtype, data, ser, flags, seq, annotations=annotations, hmac_key=hmac_key).to_bytes()


def decode_all(stream: bytes, splits: list[int] | None = None, **kwargs) -> list[protocol.Message]:
    """Feed ``stream`` in pieces cut at ``splits`` (None: all at once) and collect every message."""
    reader = MessageReader(**kwargs)
    out = []
    cuts = [0, *sorted(set(splits or [])), len(stream)]
    for a, b in zip(cuts, cuts[1:], strict=False):
        reader.feed(stream[a:b])
        while (msg := reader.next_message()) is not None:
            out.append(msg)
    assert reader.idle
    return out


def fields(msg: protocol.Message) -> tuple:
    return msg.type, msg.flags, msg.seq, msg.serializer_id, dict(msg.annotations), bytes(msg.data)


def decode_one(raw: bytes, **kwargs) -> protocol.Message:
    msgs = decode_all(raw, **kwargs)
    assert len(msgs) == 1
    return msgs[0]


# ---- the header ----------------------------------------------------------------------------
def test_golden_connect_header():
    """The captured CONNECT header of PYRO4-PROTOCOL.md 2.2 (serpent, META_ON_CONNECT, 64 bytes)."""
    wire = encode(MSG_CONNECT, b"x" * 64, 1, flags=FLAGS_META_ON_CONNECT, seq=0)
    assert wire[:HEADER_SIZE].hex() == "5059524f" "0030" "0001" "0010" "0000" "00000040" "0001" "0000" "0000" "356b"
    assert wire[HEADER_SIZE:] == b"x" * 64
    assert HEADER_SIZE == 24


def test_constants_match_pyro4():
    for name in ("MSG_CONNECT", "MSG_CONNECTOK", "MSG_CONNECTFAIL", "MSG_INVOKE", "MSG_RESULT", "MSG_PING"):
        assert getattr(protocol, name) == getattr(Pyro4_message, name)
    for name in (
        "FLAGS_EXCEPTION",
        "FLAGS_COMPRESSED",
        "FLAGS_ONEWAY",
        "FLAGS_BATCH",
        "FLAGS_META_ON_CONNECT",
        "FLAGS_ITEMSTREAMRESULT",
        "FLAGS_KEEPSERIALIZED",
    ):
        assert getattr(protocol, name) == getattr(Pyro4_message, name)
    assert protocol.CHECKSUM_MAGIC == PyroMessage.checksum_magic
    assert HEADER_SIZE == PyroMessage.header_size


# ---- byte equality with Pyro4 --------------------------------------------------------------
CORR = bytes(range(16))
ENCODE_CASES = [
    # msgtype, data, serializer id, flags, seq, annotations, hmac key, compress
    (MSG_CONNECT, b"", 1, 0, 0, None, None, False),
    (MSG_CONNECT, b"x" * 64, 1, FLAGS_META_ON_CONNECT, 0, None, None, False),
    (MSG_CONNECTOK, b"hello", 3, FLAGS_META_ON_CONNECT, 1, {"CORR": CORR}, None, False),
    (MSG_CONNECTFAIL, b"\xfa\x05\x00\x00\x00nope!", 3, 0, 7, None, b"secret", False),
    (MSG_INVOKE, b"('thing','add',(1,),{'b':2})", 1, 0, 0xFFFF, None, None, False),
    (MSG_INVOKE, b"payload", 2, FLAGS_ONEWAY | FLAGS_BATCH, 12345, {"XTRA": b"", "ABCD": b"a" * 300}, None, False),
    (MSG_INVOKE, b"k" * 5000, 6, FLAGS_KEEPSERIALIZED, 3, {"BLBI": b"\xa9blob"}, b"k3y", True),
    (MSG_RESULT, b"r" * 199, 4, 0, 2, None, None, True),
    (MSG_RESULT, b"r" * 200, 4, FLAGS_EXCEPTION, 2, None, None, True),
    (MSG_RESULT, os.urandom(1000), 5, FLAGS_ITEMSTREAMRESULT, 9, {"STRM": b"1" * 36}, b"secret", True),
    (MSG_RESULT, b"z" * 70000, 1, FLAGS_BATCH, 65535, {"CORR": CORR, "USER": b"data"}, b"secret", False),
    (MSG_PING, b"ping", 42, 0, 0, None, None, False),
    (MSG_PING, b"pong", 255, 0, 65535, {"CORR": CORR}, b"\x00" * 20, False),
]


@pytest.mark.parametrize("case", ENCODE_CASES, ids=lambda c: f"t{c[0]}-f{c[3]}-{len(c[1])}b")
def test_encode_matches_pyro4(case):
    msgtype, data, ser, flags, seq, annotations, key, compress = case
    ours = encode(msgtype, data, ser, flags, seq, annotations, hmac_key=key, compress=compress)
    assert ours == pyro4_bytes(msgtype, data, ser, flags, seq, annotations, key, compress)


@pytest.mark.parametrize("case", ENCODE_CASES, ids=lambda c: f"t{c[0]}-f{c[3]}-{len(c[1])}b")
def test_decode_pyro4_bytes(case):
    msgtype, data, ser, flags, seq, annotations, key, compress = case
    msg = decode_one(pyro4_bytes(msgtype, data, ser, flags, seq, annotations, key, compress), hmac_key=key)
    assert (msg.type, msg.serializer_id, msg.seq, msg.flags) == (msgtype, ser, seq, flags)
    assert bytes(msg.data) == data  # decompressed by the reader, flag cleared
    expected = dict(annotations or {})
    if key:
        assert len(msg.annotations["HMAC"]) == 20
        expected["HMAC"] = msg.annotations["HMAC"]
    assert dict(msg.annotations) == expected


@pytest.mark.parametrize("case", ENCODE_CASES, ids=lambda c: f"t{c[0]}-f{c[3]}-{len(c[1])}b")
def test_pyro4_decodes_our_bytes(case):
    """Pyro4's own receiver (with its HMAC check) accepts what we encode."""
    msgtype, data, ser, flags, seq, annotations, key, compress = case
    wire = encode(msgtype, data, ser, flags, seq, annotations, hmac_key=key, compress=compress)
    msg = PyroMessage.recv(FakeConnection(wire), hmac_key=key).decompress_if_needed()
    assert (msg.type, msg.serializer_id, msg.seq, msg.flags) == (msgtype, ser, seq, flags)
    assert msg.data == data


@settings(max_examples=60, deadline=None)
@given(
    msgtype=st.sampled_from(ALL_TYPES),
    data=st.binary(max_size=600) | st.builds(lambda n, b: b * n, st.integers(0, 2000), st.binary(min_size=1, max_size=3)),
    ser=st.integers(0, 0xFFFF),
    flags=st.integers(0, 0x7F).map(lambda f: f & ~FLAGS_COMPRESSED),
    seq=st.integers(0, 0xFFFF),
    annotations=st.dictionaries(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=4, max_size=4).filter(lambda k: k != "HMAC"),
        st.binary(max_size=40),
        max_size=4,
    ),
    key=st.none() | st.binary(min_size=1, max_size=32),
    compress=st.booleans(),
)
def test_encode_decode_equality_property(msgtype, data, ser, flags, seq, annotations, key, compress):
    ours = encode(msgtype, data, ser, flags, seq, annotations, hmac_key=key, compress=compress)
    theirs = pyro4_bytes(msgtype, data, ser, flags, seq, annotations, key, compress)
    assert ours == theirs
    msg = decode_one(theirs, hmac_key=key)
    assert (msg.type, msg.flags, msg.seq, msg.serializer_id, bytes(msg.data)) == (msgtype, flags, seq, ser, data)


def test_encode_parts_is_encode_and_does_not_copy_the_payload():
    payload = b"p" * 1000
    head, body = encode_parts(MSG_RESULT, payload, 3, seq=5, annotations={"CORR": CORR})
    assert body is payload
    assert head + body == encode(MSG_RESULT, payload, 3, seq=5, annotations={"CORR": CORR})
    assert head[HEADER_SIZE:] == chunk(b"CORR", CORR)
    view = memoryview(bytearray(b"m" * 300))
    head, body = encode_parts(MSG_RESULT, view, 3)
    assert body is view


@given(
    msgtype=st.sampled_from([MSG_INVOKE, MSG_RESULT]),
    data=st.binary(max_size=300) | st.just(b"compressible " * 40),
    ser=st.integers(0, 0xFFFF),
    flags=st.integers(0, 0xFFFF).filter(lambda f: not f & FLAGS_COMPRESSED),
    seq=st.integers(0, 0x1FFFF),
    corr=st.none() | st.binary(min_size=16, max_size=16) | st.binary(max_size=20),
    compress=st.booleans(),
    max_size=st.sampled_from([0, 100, 250, 1000]),
)
def test_encode_plain_is_what_encode_parts_makes(msgtype, data, ser, flags, seq, corr, compress, max_size):
    """The per-call short encoding (a correlation id at most, no HMAC): the same bytes and errors."""
    ann = {"CORR": corr} if corr is not None else None
    try:
        expected = protocol.encode_parts(msgtype, data, ser, flags, seq, ann, None, compress, max_size)
    except errors.PyroError as exc:
        with pytest.raises(type(exc)):
            protocol.encode_plain(msgtype, data, ser, flags, seq, corr, compress, max_size)
        return
    head, body = protocol.encode_plain(msgtype, data, ser, flags, seq, corr, compress, max_size)
    assert head + bytes(body) == expected[0] + bytes(expected[1])


@given(
    msgtype=st.sampled_from([MSG_INVOKE, MSG_RESULT]),
    data=st.binary(max_size=300) | st.just(b"compressible " * 40) | st.builds(bytearray, st.binary(max_size=30)),
    ser=st.integers(0, 0xFFFF),
    flags=st.integers(0, 0xFFFF).filter(lambda f: not f & FLAGS_COMPRESSED),
    seq=st.integers(0, 0x1FFFF),
    corr=st.none() | st.binary(min_size=16, max_size=16) | st.binary(max_size=20),
    compress=st.booleans(),
    max_size=st.sampled_from([0, 100, 250, 1000]),
)
def test_frame_plain_is_encode_plain_in_one_piece_or_none(msgtype, data, ser, flags, seq, corr, compress, max_size):
    """The one-send form of the short encoding: exactly encode_plain's bytes when it applies (small
    bytes, no compression, within the size limit, fields in range); None otherwise, never an error."""
    frame = protocol.frame_plain(msgtype, data, ser, flags, seq, corr, compress, max_size)
    applies = (type(data) is bytes and seq <= 0xFFFF and (corr is None or len(corr) == 16)
               and not (compress and len(data) >= protocol.COMPRESSION_THRESHOLD)
               and not 0 < max_size < len(data) + (0 if corr is None else 22))
    if not applies:
        assert frame is None
        return
    head, body = protocol.encode_plain(msgtype, data, ser, flags, seq, corr, compress, max_size)
    assert frame == head + bytes(body)


def test_frame_plain_leaves_large_data_to_a_gathering_send():
    assert protocol.frame_plain(MSG_RESULT, b"x" * (1 << 20), 3, 0, 1, None, False, 0) is None
    assert protocol.frame_plain(MSG_RESULT, b"x" * ((1 << 20) - 1), 3, 0, 1, None, False, 0) is not None


# ---- flags ---------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", [f for f in ALL_FLAGS if f != FLAGS_COMPRESSED])
def test_every_flag_bit_survives(flag):
    wire = encode(MSG_RESULT, b"data", 1, flags=flag, seq=3)
    assert struct.unpack_from("!H", wire, 8)[0] == flag
    assert decode_one(wire).flags == flag


def test_all_flags_together_and_unknown_bits_pass_through():
    every = 0
    for f in ALL_FLAGS:
        every |= f
    wire = encode(MSG_INVOKE, b"x" * 300, 1, flags=(every & ~FLAGS_COMPRESSED) | 0x8000, compress=True)
    msg = decode_one(wire)
    assert msg.flags == (every & ~FLAGS_COMPRESSED) | 0x8000
    assert bytes(msg.data) == b"x" * 300


def test_compressed_flag_is_cleared_after_decompression():
    wire = encode(MSG_RESULT, b"a" * 1000, 1, flags=FLAGS_BATCH, compress=True)
    assert struct.unpack_from("!H", wire, 8)[0] == FLAGS_BATCH | FLAGS_COMPRESSED
    msg = decode_one(wire)
    assert msg.flags == FLAGS_BATCH
    assert msg.data == b"a" * 1000


# ---- compression rules ---------------------------------------------------------------------
def test_compression_threshold_is_200_bytes():
    assert encode(MSG_RESULT, b"a" * 199, 1, compress=True) == encode(MSG_RESULT, b"a" * 199, 1)
    wire = encode(MSG_RESULT, b"a" * 200, 1, compress=True)
    assert struct.unpack_from("!H", wire, 8)[0] == FLAGS_COMPRESSED
    assert wire[HEADER_SIZE:] == zlib.compress(b"a" * 200)


def test_compression_only_when_smaller():
    noise = random.Random(7).randbytes(5000)
    wire = encode(MSG_RESULT, noise, 1, compress=True)
    assert struct.unpack_from("!H", wire, 8)[0] == 0
    assert wire[HEADER_SIZE:] == noise


def test_compression_off_by_default():
    assert struct.unpack_from("!H", encode(MSG_RESULT, b"a" * 5000, 1), 8)[0] == 0


def test_hmac_is_computed_over_the_compressed_payload():
    key = b"secret"
    wire = encode(MSG_RESULT, b"b" * 1000, 1, annotations={"CORR": CORR}, hmac_key=key, compress=True)
    compressed = zlib.compress(b"b" * 1000)
    assert wire.endswith(compressed)
    expected = hmac.new(key, compressed, hashlib.sha1)
    expected.update(CORR)
    assert chunk(b"HMAC", expected.digest()) in wire


def test_zip_bomb_is_bounded_by_max_size():
    bomb = zlib.compress(b"\0" * 20_000_000, 9)
    assert len(bomb) < 30_000
    wire = raw_header(MSG_RESULT, FLAGS_COMPRESSED, size=len(bomb)) + bomb
    tracemalloc.start()
    try:
        with pytest.raises(errors.MessageTooLargeError):
            decode_all(wire, max_size=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_decompressed_size_exactly_max_size_is_accepted():
    payload = b"q" * 100_000
    wire = encode(MSG_RESULT, payload, 1, compress=True)
    assert decode_one(wire, max_size=100_000).data == payload
    with pytest.raises(errors.MessageTooLargeError):
        decode_one(wire, max_size=99_999)


def test_bad_compressed_payloads():
    garbage = b"this is not zlib data at all"
    with pytest.raises(errors.ProtocolError, match="invalid compressed payload"):
        decode_one(raw_header(MSG_RESULT, FLAGS_COMPRESSED, size=len(garbage)) + garbage)
    truncated = zlib.compress(b"x" * 5000)[:-5]
    with pytest.raises(errors.ProtocolError):
        decode_one(raw_header(MSG_RESULT, FLAGS_COMPRESSED, size=len(truncated)) + truncated)


# ---- HMAC ----------------------------------------------------------------------------------
def test_hmac_roundtrip_and_digest_definition():
    key = b"secret"
    annotations = {"ZZZZ": b"last", "CORR": CORR, "AAAA": b"first"}
    wire = encode(MSG_CONNECTFAIL, b"reason", 3, annotations=annotations, hmac_key=key)
    msg = decode_one(wire, hmac_key=key)
    expected = hmac.new(key, b"reason", hashlib.sha1)
    for k in sorted(annotations):  # values only, ascending key order
        expected.update(annotations[k])
    assert msg.annotations["HMAC"] == expected.digest()
    assert list(msg.annotations) == ["ZZZZ", "CORR", "AAAA", "HMAC"]  # insertion order, HMAC last
    assert protocol.hmac_digest(key, b"reason", msg.annotations) == expected.digest()


@pytest.mark.parametrize("where", ["payload", "annotation"])
def test_hmac_mismatch_is_security_error(where):
    wire = bytearray(encode(MSG_RESULT, b"the payload", 1, annotations={"CORR": CORR}, hmac_key=b"secret"))
    if where == "payload":
        wire[-1] ^= 1
    else:
        wire[HEADER_SIZE + 6] ^= 1  # first byte of the CORR value
    with pytest.raises(errors.SecurityError, match="message hmac mismatch"):
        decode_one(bytes(wire), hmac_key=b"secret")


def test_hmac_wrong_key_is_security_error():
    wire = encode(MSG_RESULT, b"payload", 1, hmac_key=b"secret")
    with pytest.raises(errors.SecurityError, match="message hmac mismatch"):
        decode_one(wire, hmac_key=b"other")


def test_hmac_asymmetric_config_is_security_error():
    with pytest.raises(errors.SecurityError, match="hmac key config not symmetric"):
        decode_one(encode(MSG_RESULT, b"payload", 1, hmac_key=b"secret"))
    with pytest.raises(errors.SecurityError, match="hmac key config not symmetric"):
        decode_one(encode(MSG_RESULT, b"payload", 1), hmac_key=b"secret")
    with pytest.raises(errors.SecurityError, match="hmac key config not symmetric"):
        decode_one(encode(MSG_RESULT, b"payload", 1, annotations={"CORR": CORR}), hmac_key=b"secret")


def test_hmac_on_large_message_uses_dedicated_buffer_data():
    payload = os.urandom(200_000)
    wire = encode(MSG_RESULT, payload, 4, hmac_key=b"k", annotations={"CORR": CORR})
    msg = decode_all(wire, splits=list(range(1000, len(wire), 7919)), hmac_key=b"k")[0]
    assert bytes(msg.data) == payload
    assert msg.annotations["CORR"] == CORR


# ---- size limits ---------------------------------------------------------------------------
def test_encode_max_size_like_pyro4():
    with pytest.raises(errors.MessageTooLargeError, match=r"max message size exceeded \(1006 where max=1000\)"):
        encode(MSG_INVOKE, b"x" * 1000, 1, annotations={"ABCD": b""}, max_size=1000)
    assert len(encode(MSG_INVOKE, b"x" * 994, 1, annotations={"ABCD": b""}, max_size=1000)) == 1024


def test_reader_accepts_exactly_max_size():
    wire = encode(MSG_INVOKE, b"x" * 994, 1, annotations={"ABCD": b""})
    assert decode_one(wire, max_size=1000).data == b"x" * 994
    with pytest.raises(errors.MessageTooLargeError, match=r"max message size exceeded \(1000 where max=999\)"):
        decode_one(wire, max_size=999)


def test_max_size_checked_from_header_before_payload_is_buffered():
    """A header claiming 2 GiB is refused the moment its 24 bytes are in, without allocating."""
    header = raw_header(MSG_INVOKE, size=0x7FFFFFFF, ann=0xFFFF)
    reader = MessageReader(max_size=10_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(errors.MessageTooLargeError, match="max message size exceeded"):
            reader.feed(header)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_header_is_checked_by_get_buffer_path_too():
    reader = MessageReader(max_size=100)
    buf = reader.get_buffer()
    header = raw_header(MSG_INVOKE, size=101)
    buf[:HEADER_SIZE] = header
    del buf
    with pytest.raises(errors.MessageTooLargeError):
        reader.buffer_updated(HEADER_SIZE)


def test_unlimited_reader_does_not_trust_a_huge_length():
    """With MAX_MESSAGE_SIZE=0 a lying header still cannot make the reader allocate gigabytes up front."""
    reader = MessageReader()
    tracemalloc.start()
    try:
        reader.feed(raw_header(MSG_INVOKE, size=0x7FFFFFFF) + b"abc")
        buf = reader.get_buffer()
        assert 0 < len(buf) <= MessageReader.BIG_PREALLOC
        del buf
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MessageReader.BIG_PREALLOC + 2 * MessageReader.INITIAL
    assert reader.needed() == 0x7FFFFFFF - 3
    assert reader.next_message() is None


def test_encode_refuses_oversized_fields():
    with pytest.raises(errors.MessageTooLargeError):
        encode(MSG_INVOKE, b"", 1, annotations={"ABCD": b"x" * 0x10000})
    with pytest.raises(errors.MessageTooLargeError):
        encode(MSG_INVOKE, b"", 1, annotations={f"A{i:03}": b"x" * 30000 for i in range(3)})
    with pytest.raises(errors.ProtocolError):
        encode(MSG_INVOKE, b"", 1, seq=0x10000)
    with pytest.raises(errors.ProtocolError):
        encode(MSG_INVOKE, b"", 0x10000)


@pytest.mark.parametrize("key", ["ABC", "ABCDE", "", "ÄBCD", "日本語字"])
def test_encode_bad_annotation_keys(key):
    with pytest.raises(errors.ProtocolError):
        encode(MSG_INVOKE, b"", 1, annotations={key: b"v"})


# ---- malformed input -----------------------------------------------------------------------
def test_truncated_header_waits():
    wire = encode(MSG_INVOKE, b"abc", 1)
    reader = MessageReader()
    reader.feed(wire[:23])
    assert reader.next_message() is None
    assert reader.needed() == 1
    assert not reader.idle
    assert reader.pending == 23
    reader.feed(wire[23:25])
    assert reader.next_message() is None
    assert reader.needed() == 2
    reader.feed(wire[25:])
    assert reader.next_message().data == b"abc"
    assert reader.idle and reader.pending == 0


def test_parse_header_of_short_data():
    with pytest.raises(errors.ProtocolError, match="header data size mismatch"):
        protocol.parse_header(b"PYRO\x000")
    assert protocol.parse_header(raw_header(MSG_PING, 4, 5, 6, 7, 0)) == (MSG_PING, 4, 5, 6, 7, 0)


BAD_HEADERS = {
    "tag": (raw_header(tag=b"PYRX"), "invalid data or unsupported protocol version"),
    "lowercase tag": (raw_header(tag=b"pyro"), "invalid data or unsupported protocol version"),
    "old version": (raw_header(version=47), "invalid data or unsupported protocol version"),
    "new version": (raw_header(version=502), "invalid data or unsupported protocol version"),
    "checksum": (raw_header(checksum=0x1234), "header checksum mismatch"),
    "checksum off by one": (raw_header(size=5, checksum=(4 + 48 + 5 + 1 + 0x34E9 + 1) & 0xFFFF), "checksum"),
    "negative length": (raw_header(size=-1), "invalid data length -1"),
    "most negative length": (raw_header(size=-0x80000000), "invalid data length"),
    "msg type 0": (raw_header(msgtype=0), "invalid msg type 0"),
    "msg type 7": (raw_header(msgtype=7), "invalid msg type 7"),
    "msg type 65535": (raw_header(msgtype=0xFFFF), "invalid msg type 65535"),
    "http": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "invalid data or unsupported protocol version"),
}


@pytest.mark.parametrize("name", BAD_HEADERS)
def test_bad_headers_are_protocol_errors(name):
    wire, message = BAD_HEADERS[name]
    reader = MessageReader()
    with pytest.raises(errors.ProtocolError, match=message) as info:
        reader.feed(wire + b"\0" * 100)
    assert type(info.value) is errors.ProtocolError
    with pytest.raises(errors.ProtocolError):  # the stream stays broken
        reader.next_message()


BAD_ANNOTATIONS = {
    "chunk header truncated": chunk(b"CORR", b"")[:3],
    "chunk length overruns": struct.pack("!4sH", b"CORR", 100) + b"x" * 10,
    "second chunk overruns": chunk(b"AAAA", b"1") + struct.pack("!4sH", b"BBBB", 5) + b"xy",
    "non-ascii key": chunk(b"\xffORR", b"value"),
    "non-ascii key 2": chunk("Ä".encode("latin-1") + b"BCD", b""),
}


@pytest.mark.parametrize("name", BAD_ANNOTATIONS)
def test_bad_annotations_are_protocol_errors(name):
    ann = BAD_ANNOTATIONS[name]
    wire = raw_header(MSG_INVOKE, size=3, ann=len(ann)) + ann + b"abc"
    with pytest.raises(errors.ProtocolError):
        decode_one(wire)


def test_annotations_any_order_and_empty_values():
    ann = chunk(b"ZZZZ", b"") + chunk(b"CORR", CORR) + chunk(b"AAAA", b"v")
    msg = decode_one(raw_header(MSG_RESULT, size=2, ann=len(ann)) + ann + b"ok")
    assert msg.annotations == {"ZZZZ": b"", "CORR": CORR, "AAAA": b"v"}
    assert msg.data == b"ok"
    assert all(type(v) is bytes for v in msg.annotations.values())


def test_message_without_annotations_has_empty_mapping():
    msg = decode_one(encode(MSG_PING, b"ping", 42))
    assert dict(msg.annotations) == {}
    assert "HMAC" not in msg.annotations
    assert "size=4" in repr(msg)


def test_good_message_is_returned_before_the_error_that_follows_it():
    good = encode(MSG_RESULT, b"fine", 1, seq=1)
    reader = MessageReader()
    reader.feed(good + raw_header(tag=b"JUNK"))
    msg = reader.next_message()
    assert msg is not None and msg.data == b"fine"
    with pytest.raises(errors.ProtocolError):
        reader.next_message()


def test_errors_raised_are_only_pyroplug_errors_for_some_classics():
    for junk in (b"\0" * 24, b"\xff" * 24, b"PYRO" + b"\0" * 20, os.urandom(24)):
        with pytest.raises(errors.PyroError):
            MessageReader().feed(junk)


# ---- incremental decoding ------------------------------------------------------------------
def sample_stream() -> tuple[bytes, list[tuple]]:
    rnd = random.Random(1234)
    specs = [
        dict(msgtype=MSG_CONNECT, data=b"hello", ser=1, flags=FLAGS_META_ON_CONNECT),
        dict(msgtype=MSG_CONNECTOK, data=b"", ser=1, annotations={"CORR": CORR}),
        dict(msgtype=MSG_INVOKE, data=b"c" * 3000, ser=3, seq=1, compress=True),
        dict(msgtype=MSG_RESULT, data=rnd.randbytes(70_000), ser=3, seq=1, annotations={"USER": b"u"}),
        dict(msgtype=MSG_INVOKE, data=rnd.randbytes(65536 - 24), ser=4, seq=2),  # exactly 64 KiB in total
        dict(msgtype=MSG_RESULT, data=rnd.randbytes(65536 - 23), ser=4, seq=2),  # one byte more
        dict(msgtype=MSG_PING, data=b"", ser=42, seq=3),
        dict(msgtype=MSG_RESULT, data=b"big and compressible " * 10_000, ser=1, seq=4, compress=True),
        dict(msgtype=MSG_RESULT, data=b"x", ser=1, seq=5, flags=FLAGS_EXCEPTION),
    ]
    stream = b""
    expected = []
    for spec in specs:
        stream += encode(
            spec["msgtype"],
            spec["data"],
            spec["ser"],
            spec.get("flags", 0),
            spec.get("seq", 0),
            spec.get("annotations"),
            compress=spec.get("compress", False),
        )
        expected.append(
            (spec["msgtype"], spec.get("flags", 0), spec.get("seq", 0), spec["ser"], spec.get("annotations") or {}, spec["data"])
        )
    return stream, expected


def test_whole_stream_at_once():
    stream, expected = sample_stream()
    assert [fields(m) for m in decode_all(stream)] == expected


def test_one_byte_at_a_time_gives_identical_messages():
    stream, expected = sample_stream()
    reader = MessageReader()
    got = []
    for i in range(len(stream)):
        reader.feed(stream[i : i + 1])
        msg = reader.next_message()
        if msg is not None:
            got.append(fields(msg))
    assert got == expected
    assert reader.idle


@pytest.mark.parametrize("seed", range(5))
def test_random_split_points(seed):
    stream, expected = sample_stream()
    rnd = random.Random(seed)
    splits = rnd.sample(range(1, len(stream)), 40)
    assert [fields(m) for m in decode_all(stream, splits=splits)] == expected


def _read_some_all(stream: bytes, cuts: list[int], reader: MessageReader | None = None) -> list[tuple]:
    """Read ``stream`` with ``read_some`` through a fake socket whose reads end at ``cuts``."""
    reader = reader or MessageReader()
    bounds = [0, *sorted(set(cuts)), len(stream)]
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    def recv_into(buffer: memoryview) -> int:
        if not chunks:
            return 0
        chunk = chunks[0]
        n = min(len(chunk), len(buffer))
        buffer[:n] = chunk[:n]
        chunks[0] = chunk[n:]
        if not chunks[0]:
            chunks.pop(0)
        return n

    got = []
    while True:
        try:
            msg = reader.read_some(recv_into)
        except errors.ConnectionClosedError:
            break
        if msg is not None:
            got.append(fields(msg))
    assert reader.idle
    return got


def test_read_some_takes_several_messages_from_one_read():
    """A handshake answer and the first call's result arrive in one read (pyroplug daemons send them so)."""
    pair = [
        encode(MSG_CONNECTOK, b"meta" * 10, 3, FLAGS_META_ON_CONNECT, 0, {"CORR": CORR}),
        encode(MSG_RESULT, b"\xe9\x03\x00\x00\x00", 3, 0, 1, {"CORR": CORR}),
        encode(MSG_RESULT, b"r", 3, 0, 2, {"CORR": CORR, "USER": b"u"}),
        encode(MSG_RESULT, b"plain", 3, 0, 3),
    ]
    stream = b"".join(pair)
    expected = [fields(m) for m in decode_all(stream)]
    assert [m[2] for m in expected] == [0, 1, 2, 3]
    assert _read_some_all(stream, []) == expected  # all four in the first read
    assert _read_some_all(stream, [len(pair[0]) + len(pair[1])]) == expected  # two, then two


@pytest.mark.parametrize("seed", range(5))
def test_read_some_gives_the_same_messages_whatever_the_reads(seed):
    stream, expected = sample_stream()
    rnd = random.Random(seed)
    assert _read_some_all(stream, rnd.sample(range(1, len(stream)), 30)) == expected
    assert _read_some_all(stream, []) == expected


def test_many_messages_fed_at_once_without_reading():
    """More queued messages than the initial buffer holds (the buffer grows; nothing is lost)."""
    one = encode(MSG_INVOKE, b"x" * 100, 1)
    reader = MessageReader()
    reader.feed(one * 2000)
    count = 0
    while (msg := reader.next_message()) is not None:
        assert msg.data == b"x" * 100
        count += 1
    assert count == 2000 and reader.idle


def recv_into_reader(reader: MessageReader, source: bytes, sizes, check=None) -> list[protocol.Message]:
    """Drive the reader like a socket loop: get_buffer, partial recv_into, buffer_updated."""
    out = []
    pos = 0
    while pos < len(source):
        buf = reader.get_buffer()
        assert len(buf) > 0, "get_buffer must never hand out an empty buffer"
        if check:
            check(reader, buf)
        n = min(len(buf), next(sizes), len(source) - pos)
        buf[:n] = source[pos : pos + n]
        del buf
        pos += n
        reader.buffer_updated(n)
        while (msg := reader.next_message()) is not None:
            out.append(msg)
    return out


def test_large_message_dedicated_buffer_with_partial_fills():
    payload = random.Random(5).randbytes(300_000)
    small = encode(MSG_PING, b"after", 42, seq=2)
    wire = encode(MSG_RESULT, payload, 4, seq=1, annotations={"CORR": CORR}) + small
    rnd = random.Random(9)
    seen_dedicated = []

    def check(reader, buf):
        if not reader.idle and reader.needed() > 0 and reader.pending >= HEADER_SIZE:
            # while the big body is in progress the buffer offered is its own: never past its end
            assert len(buf) <= reader.needed()
            seen_dedicated.append(len(buf))

    msgs = recv_into_reader(MessageReader(), wire, iter(lambda: rnd.randint(1, 40_000), None), check)
    assert [m.seq for m in msgs] == [1, 2]
    big, after = msgs
    assert isinstance(big.data, (memoryview, bytearray))
    assert bytes(big.data) == payload and len(big.data) == len(payload)
    assert big.annotations == {"CORR": CORR}
    assert after.data == b"after"
    assert seen_dedicated


def test_large_message_body_and_next_message_in_one_read():
    """The reader must not hang when one read completes a large body and carries the next message."""
    big = encode(MSG_RESULT, b"y" * 100_000, 1, seq=1)
    small = encode(MSG_RESULT, b"z", 1, seq=2)
    reader = MessageReader()
    reader.feed(big[:1000])
    reader.feed(big[1000:] + small + small)
    assert [bytes(m.data) for m in iter(reader.next_message, None)] == [b"y" * 100_000, b"z", b"z"]
    assert reader.idle


def test_large_message_whole_in_one_feed():
    payload = b"w" * 200_000
    msgs = decode_all(encode(MSG_RESULT, payload, 1) * 3)
    assert [bytes(m.data) for m in msgs] == [payload] * 3


def test_large_message_data_is_independent_of_the_next_one():
    a = encode(MSG_RESULT, b"a" * 100_000, 1)
    b = encode(MSG_RESULT, b"b" * 100_000, 1)
    reader = MessageReader()
    reader.feed(a)
    first = reader.next_message()
    reader.feed(b)
    second = reader.next_message()
    assert bytes(first.data) == b"a" * 100_000 and bytes(second.data) == b"b" * 100_000


def test_small_message_data_is_bytes():
    msg = decode_one(encode(MSG_RESULT, b"abc", 1))
    assert type(msg.data) is bytes


def test_feed_accepts_bytes_like_objects():
    wire = encode(MSG_RESULT, b"abc" * 10, 1)
    for obj in (wire, bytearray(wire), memoryview(wire)):
        assert decode_one(obj).data == b"abc" * 10
    import array

    arr = array.array("B", wire)
    assert decode_one(arr).data == b"abc" * 10


# ---- fuzzing -------------------------------------------------------------------------------
frames = st.builds(
    lambda t, data, ser, flags, seq, ann, key, comp: (
        encode(t, data, ser, flags, seq, ann, hmac_key=key, compress=comp),
        key,
    ),
    st.sampled_from(ALL_TYPES),
    st.binary(max_size=300) | st.builds(lambda n: b"ab" * n, st.integers(0, 40_000)),
    st.integers(0, 0xFFFF),
    st.integers(0, 0x7F).map(lambda f: f & ~FLAGS_COMPRESSED),
    st.integers(0, 0xFFFF),
    st.dictionaries(st.sampled_from(["CORR", "STRM", "ABCD", "user"]), st.binary(max_size=20), max_size=3),
    st.none() | st.just(b"secret"),
    st.booleans(),
)

mutation = st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "delete"]), st.integers(0, 10**6), st.integers(0, 255))


def mutate(data: bytes, mutations) -> bytes:
    buf = bytearray(data)
    for kind, where, value in mutations:
        if not buf:
            break
        i = where % len(buf)
        if kind == "flip":
            buf[i] ^= 1 << (value % 8)
        elif kind == "set":
            buf[i] = value
        elif kind == "cut":
            del buf[i:]
        elif kind == "insert":
            buf[i:i] = bytes([value]) * (value % 7 + 1)
        else:
            del buf[i : i + value % 9 + 1]
    return bytes(buf)


def run_reader(stream: bytes, splits: list[int], **kwargs) -> list[protocol.Message]:
    """Decode; only pyroplug errors may come out. Returns the messages decoded before any error."""
    reader = MessageReader(**kwargs)
    out: list[protocol.Message] = []
    cuts = [0, *sorted({s % (len(stream) + 1) for s in splits}), len(stream)]
    try:
        for a, b in zip(cuts, cuts[1:], strict=False):
            reader.feed(stream[a:b])
            for _ in range(len(stream) + 1):  # bounded: never spin
                msg = reader.next_message()
                if msg is None:
                    break
                out.append(msg)
            else:
                pytest.fail("next_message keeps returning messages")
    except errors.PyroError:
        pass
    return out


FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=8), st.sampled_from([0, 1000, 100_000]))
def test_fuzz_random_bytes(data, splits, max_size):
    run_reader(data, splits, max_size=max_size)
    run_reader(b"PYRO\x000" + data, splits, max_size=max_size)


@FUZZ
@given(st.lists(frames, min_size=1, max_size=4), st.lists(st.integers(0, 10**6), max_size=6))
def test_fuzz_valid_frames_any_split(items, splits):
    key = items[0][1]
    stream = b"".join(wire for wire, k in items if k == key)
    count = sum(1 for _, k in items if k == key)
    whole = [fields(m) for m in run_reader(stream, [], hmac_key=key)]
    assert len(whole) == count
    assert [fields(m) for m in run_reader(stream, splits, hmac_key=key)] == whole


@FUZZ
@given(
    st.lists(frames, min_size=1, max_size=3),
    st.lists(mutation, min_size=1, max_size=4),
    st.lists(st.integers(0, 10**6), max_size=6),
    st.sampled_from([0, 50_000]),
)
def test_fuzz_mutated_frames(items, mutations, splits, max_size):
    stream = mutate(b"".join(wire for wire, _ in items), mutations)
    for key in (None, b"secret"):
        for msg in run_reader(stream, splits, hmac_key=key, max_size=max_size):
            assert 0 <= len(msg.data)
            assert msg.type in ALL_TYPES
            assert not msg.flags & FLAGS_COMPRESSED


def test_fuzz_memory_stays_bounded():
    """Random headers with valid checksums (any length up to 2 GiB) never make the reader hoard memory."""
    rnd = random.Random(99)
    tracemalloc.start()
    try:
        for _ in range(300):
            size = rnd.choice([0, 1, 100, 70_000, 10**6, 10**8, 0x7FFFFFFF, rnd.randint(0, 0x7FFFFFFF)])
            ann = rnd.choice([0, 6, 0xFFFF, rnd.randint(0, 0xFFFF)])
            head = raw_header(rnd.choice(ALL_TYPES), rnd.randint(0, 0xFFFF), rnd.randint(0, 0xFFFF), size, 1, ann)
            tail = rnd.randbytes(rnd.randint(0, 5000))
            run_reader(head + tail, [rnd.randint(0, 6000) for _ in range(3)], max_size=rnd.choice([0, 10**6]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MessageReader.BIG_PREALLOC


def test_each_message_has_its_own_annotations_dict():
    """The daemon hands msg.annotations to user code as the call context's annotations: no sharing."""
    reader = MessageReader()
    reader.feed(encode(MSG_INVOKE, b"a", 1) + encode(MSG_INVOKE, b"b", 1))
    first, second = reader.next_message(), reader.next_message()
    first.annotations["USER"] = b"x"
    assert dict(second.annotations) == {}
    assert first.annotations is not second.annotations
    assert dict(protocol.Message(MSG_PING, b"", 42).annotations) == {}


def test_parse_annotations_public_helper():
    raw = chunk(b"CORR", CORR) + chunk(b"Abc1", b"")
    assert protocol.parse_annotations(raw) == {"CORR": CORR, "Abc1": b""}
    assert protocol.parse_annotations(memoryview(raw)) == {"CORR": CORR, "Abc1": b""}
    assert protocol.parse_annotations(b"") == {}


def test_many_distinct_annotation_keys_encode_correctly():
    annotations = {f"K{i:03}": bytes([i % 256]) for i in range(400)}
    msg = decode_one(encode(MSG_INVOKE, b"", 1, annotations=annotations))
    assert msg.annotations == annotations


@pytest.mark.parametrize(("total", "dedicated"), [(65536, False), (65537, True), (1_000_000, True)])
def test_dedicated_buffer_threshold_is_64_kib(total, dedicated):
    payload = bytes(range(256)) * (total // 256 + 1)
    payload = payload[: total - HEADER_SIZE]
    wire = encode(MSG_RESULT, payload, 1)
    assert len(wire) == total
    reader = MessageReader()
    reader.feed(wire[:100])
    buf = reader.get_buffer()
    if dedicated:
        assert len(buf) == total - 100  # the offered buffer is exactly the rest of the body
    assert reader.needed() == total - 100
    del buf
    reader.feed(wire[100:])
    msg = reader.next_message()
    assert (type(msg.data) is not bytes) == dedicated
    assert bytes(msg.data) == payload


# ---- the small initial buffer --------------------------------------------------------------
class _Reads:
    """A recv_into over a byte string that counts its calls and hands out at most ``limit`` bytes each."""

    def __init__(self, data: bytes, limit: int = 1 << 30) -> None:
        self.data, self.pos, self.calls, self.limit = data, 0, 0, limit

    def __call__(self, buf: memoryview) -> int:
        self.calls += 1
        n = min(len(buf), self.limit, len(self.data) - self.pos)
        buf[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def test_reader_starts_small():
    reader = MessageReader()
    assert len(reader.get_buffer()) == MessageReader.START < MessageReader.INITIAL


@pytest.mark.parametrize("size", [0, 100, MessageReader.START - HEADER_SIZE - 22])
def test_small_message_is_one_read_from_a_fresh_reader(size):
    wire = encode(MSG_RESULT, b"s" * size, 1, seq=3, annotations={"CORR": CORR})
    assert len(wire) <= MessageReader.START
    reads = _Reads(wire * 3)
    reader = MessageReader()
    for _ in range(3):
        reads.data, reads.pos = wire, 0
        before = reads.calls
        msg = reader.read_message(reads)
        assert reads.calls - before == 1
        assert msg.data == b"s" * size and msg.seq == 3 and msg.annotations == {"CORR": CORR}


@pytest.mark.parametrize("size", [MessageReader.START, 40_000, MessageReader.INITIAL - HEADER_SIZE])
def test_reader_grows_once_for_a_message_beyond_the_start_buffer(size):
    """The first larger message takes one extra read (the buffer grows to fit it whole); later ones take one."""
    payload = bytes(range(256)) * (size // 256 + 1)
    wire = encode(MSG_RESULT, payload[:size], 1)
    reader = MessageReader()
    reads = _Reads(wire)
    assert bytes(reader.read_message(reads).data) == payload[:size]
    assert reads.calls == 2
    assert len(reader.get_buffer()) >= len(wire)
    reads = _Reads(wire)
    assert bytes(reader.read_message(reads).data) == payload[:size]
    assert reads.calls == 1
    assert reader.idle


@pytest.mark.parametrize("seed", range(5))
def test_reader_growth_across_partial_reads(seed):
    """Messages of every size class, several per read or split over many reads, from a fresh reader."""
    rnd = random.Random(seed)
    sizes = [rnd.choice([0, 10, 5000, 17_000, 30_000, 65_000, 70_000, 200_000]) for _ in range(30)]
    payloads = [rnd.randbytes(n) for n in sizes]
    wire = b"".join(encode(MSG_RESULT, p, 1, seq=i) for i, p in enumerate(payloads))
    msgs = recv_into_reader(MessageReader(), wire, iter(lambda: rnd.randint(1, 50_000), None))
    assert [bytes(m.data) for m in msgs] == payloads
    assert [m.seq for m in msgs] == list(range(30))
    reads = _Reads(wire, limit=rnd.randint(100, 30_000))
    reader = MessageReader()
    assert [bytes(reader.read_message(reads).data) for _ in payloads] == payloads
    assert reader.idle
