"""Hostile payloads per format: every one ends in a pyroplug error, quickly, never a crash or a hang."""

from __future__ import annotations

import marshal
import struct
import time

import msgpack
import pytest

from pyroplug.core import errors
from pyroplug.core.config import Config
from pyroplug.core.serializer import Serializer
from pyroplug.plugins.serializers.dill import DillSerializer
from pyroplug.plugins.serializers.json import JsonSerializer
from pyroplug.plugins.serializers.marshal import MarshalSerializer
from pyroplug.plugins.serializers.msgpack import MsgpackSerializer
from pyroplug.plugins.serializers.pickle import PickleSerializer
from pyroplug.plugins.serializers.serpent import SerpentSerializer

CLASSES = {c.name: c for c in (SerpentSerializer, JsonSerializer, MarshalSerializer, PickleSerializer,
                               DillSerializer, MsgpackSerializer)}
DEEP = 100_000
H = b"# serpent utf-8 python3.2\n"


def ext(code: int, data: bytes) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, data))


HOSTILE: dict[str, list[tuple[str, bytes]]] = {
    "serpent": [
        ("deep brackets", H + b"[" * DEEP + b"]" * DEEP),
        ("deep unary minus", b"-" * DEEP + b"1"),
        ("long sum", b"+".join([b"1"] * DEEP)),
        ("huge int literal", b"1" * 5000),
        ("NUL byte", b"'a\x00'"),
        ("not UTF-8", b"'\xff\xfe'"),
        ("code", b"__import__('os').system('true')"),
        ("unhashable set member", b"{[1]}"),
        ("bad nan dict", b"{'__class__':'float','value':[1]}"),
        ("bad complex dict", b"{'__class__':'complex','real':'x','imag':1}"),
        ("truncated", H + b"('thing','add',(1,"),
    ],
    "json": [
        ("deep arrays", b"[" * DEEP + b"]" * DEEP),
        ("deep objects", b'{"a":' * DEEP + b"1" + b"}" * DEEP),
        ("huge int literal", b"1" * 5000),
        ("not UTF-8", b'"\xff"'),
        ("UTF-16", '{"a": 1}'.encode("utf-16")),
        ("trailing garbage", b"[1] x"),
        ("bad escape", b'"\\x41"'),
    ],
    "marshal": [
        ("tuple bomb", b"(\xff\xff\xff\x7f"),
        ("list bomb", b"[\xff\xff\xff\x7f"),
        ("list bomb with FLAG_REF", b"\xdb\xff\xff\xff\x7f"),
        ("nested bomb", b"[\x01\x00\x00\x00" * 10 + b"(\xff\xff\xff\x7f"),
        ("bomb next to a decoy", b"((\x00\x00\x00[\xff\xff\xff\x7f"),
        ("deep lists", b"[\x01\x00\x00\x00" * DEEP + b"N"),
        ("deep dicts", b"{" * DEEP),
        ("huge string length", b"u\xff\xff\xff\x7f"),
        ("huge long", b"l\xff\xff\xff\x7f"),
        ("truncated call", marshal.dumps(("thing", "add", [1], {"b": 2}))[:-3]),
        ("bad type code", b"\x01"),
        ("code object", b"c" + b"\x00" * 40),
    ],
    "msgpack": [
        ("deep arrays", b"\x91" * DEEP + b"\xc0"),
        ("deep maps", b"\x81\xa1a" * DEEP + b"\xc0"),
        ("reserved byte", b"\xc1"),
        ("array32 claims 4G items", b"\xdd\xff\xff\xff\xff"),
        ("bin32 claims 4G bytes", b"\xc6\xff\xff\xff\xff"),
        ("truncated", msgpack.packb(["thing", "add", [1], {"b": 2}])[:-2]),
        ("trailing data", msgpack.packb(1) + b"\x01"),
        ("non-str map key", msgpack.packb({1: 2})),
        ("array as map key", b"\x81\x91\x01\x02"),
        ("invalid UTF-8 str", b"\xa2\xff\xfe"),
        ("huge bigint ext", ext(0x31, b"9" * 5000)),
        ("bigint ext not a number", ext(0x31, b"nope")),
        ("complex ext too short", ext(0x30, b"\x00" * 8)),
        ("datetime ext overflow", ext(0x32, struct.pack("d", 1e300))),
        ("datetime ext nan", ext(0x32, struct.pack("d", float("nan")))),
        ("date ext ordinal 0", ext(0x33, struct.pack("l", 0))),
        ("date ext wrong size", ext(0x33, b"\x01")),
        ("unknown ext", ext(0x40, b"")),
    ],
    "pickle": [
        ("truncated", b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00]\x94"),
        ("stack underflow", b"\x80\x05R."),
        ("unknown opcode", b"\x80\x05\xff."),
        ("huge BINBYTES8", b"\x80\x05\x8e\xff\xff\xff\xff\xff\xff\xff\x7f"),
        ("unknown module", b"\x80\x02cno_such_module_xyz\nThing\nq\x00)\x81q\x01."),
        ("unknown Pyro4 name", b"\x80\x02cPyro4.errors\nNoSuchError\nq\x00)\x81q\x01."),
    ],
}
HOSTILE["dill"] = HOSTILE["pickle"]
CASES = [(name, label, data) for name, items in HOSTILE.items() for label, data in items]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name, label, data", CASES, ids=[f"{n}-{label}" for n, label, _ in CASES])
def test_hostile_payload(name: str, label: str, data: bytes) -> None:
    ser: Serializer = CLASSES[name](Config())
    for form in (data, memoryview(data)):
        start = time.perf_counter()
        with pytest.raises(errors.PyroError) as info:
            ser.loads(form)
        assert type(info.value) in (errors.SerializeError, errors.SecurityError)
        with pytest.raises(errors.PyroError):
            ser.loads_call(form)
        assert time.perf_counter() - start < 2.0, f"{name} {label}: too slow"


def test_marshal_length_guard_keeps_valid_data() -> None:
    """Strings that merely contain list/tuple header bytes trigger the exact walk, which accepts them."""
    ser = MarshalSerializer(Config())
    decoy = b"(\x00\x00\x01\x00"  # a tuple header claiming 65536 items, inside a bytes value
    tricky = ["f(x) + [abc]", decoy, ("(", "[" * 300), {"k": [(), (1,) * 300]}, 2**100, 0x7F000028, -(2**100),
              1.5, complex(1, 2), {1, 2}, frozenset({3}), None, True, ..., list(range(0x27, 0x10000, 0x100))]
    for value in tricky:
        assert ser.loads(marshal.dumps(value)) == value
        for version in range(5):
            assert ser.loads(marshal.dumps([value, decoy], version)) == [value, decoy]


def test_marshal_walk_refuses_code_objects() -> None:
    """Code objects are refused when the length guard walks the data (no Pyro peer sends them)."""
    ser = MarshalSerializer(Config())
    payload = marshal.dumps([compile("1", "x", "eval"), b"(\x00\x00\x01\x00"])
    with pytest.raises(errors.SerializeError, match="code objects"):
        ser.loads(payload)


def test_json_escaped_class_tag_stays_plain_data() -> None:
    """The class-dict walk runs only when the raw text contains ``__class__``; a tag spelled with escapes
    is left as a plain dict (no object is built from it), which is safe."""
    ser = JsonSerializer(Config())
    assert ser.loads(b'{"\\u005f_class__": "os.__system__"}') == {"__class__": "os.__system__"}
    with pytest.raises(errors.SecurityError):
        ser.loads(b'{"__class__": "os.__system__"}')


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_large_memoryview_payload(name: str) -> None:
    ser: Serializer = CLASSES[name](Config())
    value = {"rows": [[i, f"row {i}", i * 0.5] for i in range(20_000)]}
    data = ser.dumps(value)
    assert len(data) > 300_000
    buffer = bytearray(b"HEADER" + data)
    assert ser.loads(memoryview(buffer)[6:]) == value
