"""Golden tests: captured Pyro4 bytes, byte equality with stock Pyro4 4.82, and decoding each other's data.

Stock Pyro4's serializers are used in-process (``Pyro4.util.get_serializer``); they read the global
``Pyro4.config``, whose defaults (pickle protocol 5, ``json``) equal our default Config, and no test here
changes it. Samples are built twice by the same function, once from pyroplug's classes and once from
Pyro4's, so both sides serialize structurally identical values.
"""

from __future__ import annotations

import datetime
import decimal
import math
import struct
import sys
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import msgpack
import Pyro4.core
import Pyro4.errors
import Pyro4.futures
import Pyro4.util
import pytest

from pyroplug.core import errors
from pyroplug.core.config import Config
from pyroplug.core.futures import _ExceptionWrapper
from pyroplug.core.protocol import FLAGS_META_ON_CONNECT, MSG_CONNECT, encode
from pyroplug.core.serializer import Serializer
from pyroplug.core.uri import URI
from pyroplug.plugins.serializers.dill import DillSerializer
from pyroplug.plugins.serializers.json import JsonSerializer
from pyroplug.plugins.serializers.marshal import MarshalSerializer
from pyroplug.plugins.serializers.msgpack import MsgpackSerializer
from pyroplug.plugins.serializers.pickle import PickleSerializer
from pyroplug.plugins.serializers.serpent import SerpentSerializer

pytestmark = pytest.mark.interop

OURS = {c.name: c for c in (SerpentSerializer, JsonSerializer, MarshalSerializer, PickleSerializer,
                            DillSerializer, MsgpackSerializer)}
NAMES = sorted(OURS)
SERPENT_HEADER = b"# serpent utf-8 python3.2\n"
TB = ["Traceback (most recent call last):\n", "ValueError: boom\n"]


def ours(name: str) -> Serializer:
    return OURS[name](Config())


def theirs(name: str) -> Any:
    return Pyro4.util.get_serializer(name)


# ---- (a) bytes captured from stock Pyro4 traffic (PYRO4-PROTOCOL.md) -----------------------------
def test_captured_msgpack_call() -> None:
    captured = bytes([0x94, 0xA5]) + b"thing" + bytes([0xA3]) + b"add" + bytes([0x91, 0x01, 0x81, 0xA1]) + b"b" + b"\x02"
    assert ours("msgpack").dumps_call("thing", "add", (1,), {"b": 2}) == captured
    assert ours("msgpack").loads_call(captured) == ("thing", "add", [1], {"b": 2})


@pytest.mark.parametrize("call, text", [
    (("thing", "add", (1,), {"b": 2}), "('thing','add',(1,),{'b':2})"),
    (("thing", "__getattr__", ("attr",), None), "('thing','__getattr__',('attr',),None)"),
    (("thing", "<batch>", [("add", (1,), {}), ("fail", (), {}), ("add", (2,), {})], None),
     "('thing','<batch>',[('add',(1,),{}),('fail',(),{}),('add',(2,),{})],None)"),
    (("Pyro.Daemon", "get_next_stream_item", ["u-u-i-d"], {}),
     "('Pyro.Daemon','get_next_stream_item',['u-u-i-d'],{})"),
])
def test_captured_serpent_calls(call: tuple, text: str) -> None:
    assert ours("serpent").dumps_call(*call) == SERPENT_HEADER + text.encode()
    assert ours("serpent").loads_call(SERPENT_HEADER + text.encode()) == call


def test_captured_json_call() -> None:
    captured = b'{"object": "thing", "method": "add", "params": [1], "kwargs": {"b": 2}}'
    assert ours("json").dumps_call("thing", "add", [1], {"b": 2}) == captured
    assert ours("json").loads_call(captured) == ("thing", "add", [1], {"b": 2})
    batch = ours("json").dumps_call("thing", "<batch>", [("add", [1], {})], None)
    assert batch == b'{"object": "thing", "method": "<batch>", "params": [["add", [1], {}]], "kwargs": null}'


def test_captured_connect_header() -> None:
    payload = ours("serpent").dumps({"handshake": "hello", "object": "thing"})
    assert len(payload) == 64
    header = encode(MSG_CONNECT, payload, 1, FLAGS_META_ON_CONNECT, 0)[:24]
    assert header == bytes.fromhex("5059524f 0030 0001 0010 0000 00000040 0001 0000 0000 356b")


def test_captured_connectfail_reason_in_marshal() -> None:
    reason = " ".join(["no free workers,", "increase server threadpool size"])  # built at run time, like str(exc)
    assert ours("marshal").dumps(reason) == b"\xfa" + bytes([len(reason)]) + reason.encode()


def test_captured_exception_and_batch_reply() -> None:
    exc = ValueError("boom", 42)
    exc._pyroTraceback = TB  # type: ignore[attr-defined]
    body = ("{'__class__':'builtins.ValueError','__exception__':True,'args':('boom',42),"
            "'attributes':{'_pyroTraceback':['Traceback (most recent call last):\\n','ValueError: boom\\n']}}")
    assert ours("serpent").dumps(exc) == SERPENT_HEADER + body.encode()
    batch = ours("serpent").dumps([2, _ExceptionWrapper(exc)])
    assert batch == SERPENT_HEADER + b"[2,{'__class__':'Pyro4.futures._ExceptionWrapper','exception':" + body.encode() + b"}]"
    stop = ours("serpent").dumps(StopIteration())
    assert stop == SERPENT_HEADER + b"{'__class__':'builtins.StopIteration','__exception__':True,'args':(),'attributes':{}}"


@pytest.mark.parametrize("uri, state", [
    ("PYRO:obj@localhost:9090", "('PYRO','obj',None,'localhost',9090)"),
    ("PYRO:o@./u:/tmp/s", "('PYRO','o','/tmp/s',None,None)"),
])
def test_captured_uri_state(uri: str, state: str) -> None:
    expected = SERPENT_HEADER + ("{'__class__':'Pyro4.core.URI','state':" + state + "}").encode()
    assert ours("serpent").dumps(URI(uri)) == expected
    assert ours("serpent").loads(expected) == URI(uri)


def test_serpent_special_values() -> None:
    ser = ours("serpent")
    assert ser.dumps(float("nan")) == SERPENT_HEADER + b"{'__class__':'float','value':'nan'}"
    assert math.isnan(ser.loads(SERPENT_HEADER + b"{'__class__':'float','value':'nan'}"))
    assert ser.dumps([math.inf, -math.inf]) == SERPENT_HEADER + b"[1e30000,-1e30000]"
    assert ser.dumps(set()) == SERPENT_HEADER + b"()"
    assert ser.dumps(b"ab") == SERPENT_HEADER + b"{'data': 'YWI=', 'encoding': 'base64'}"  # serpent's repr()
    assert ser.loads(ser.dumps(b"ab")) == {"data": "YWI=", "encoding": "base64"}  # no decoding, as in Pyro4


def test_msgpack_ext_types_are_pyro4s() -> None:
    ser = ours("msgpack")
    when = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)

    def ext(value: Any) -> Any:
        return msgpack.unpackb(ser.dumps(value), ext_hook=lambda code, data: (code, data))

    assert ext(complex(1.5, -2)) == (0x30, struct.pack("dd", 1.5, -2.0))
    assert ext(2**70) == (0x31, str(2**70).encode("ascii"))
    assert ext(when) == (0x32, struct.pack("d", when.timestamp()))
    assert ext(datetime.date(2020, 1, 2)) == (0x33, struct.pack("l", datetime.date(2020, 1, 2).toordinal()))
    if struct.calcsize("l") == 8:  # LP64: the date ordinal is an 8-byte native long (4 on Windows)
        assert len(ext(datetime.date(2020, 1, 2))[1]) == 8
    assert ser.loads(ser.dumps([complex(1.5, -2), 2**70, when])) == [complex(1.5, -2), 2**70, when]
    with pytest.raises(errors.SerializeError, match="timezone"):
        ser.dumps(when.replace(tzinfo=datetime.timezone.utc))
    with pytest.raises(errors.SerializeError, match="ext code"):
        ser.loads(msgpack.packb(msgpack.ExtType(0x40, b"")))


# ---- (b) byte equality with stock Pyro4 -----------------------------------------------------------
OUR_NS = SimpleNamespace(URI=URI, errors=errors, Wrapper=_ExceptionWrapper)
PYRO4_NS = SimpleNamespace(URI=Pyro4.core.URI, errors=Pyro4.errors, Wrapper=Pyro4.futures._ExceptionWrapper)


def _error(ns: SimpleNamespace, name: str, *args: Any, **attrs: Any) -> BaseException:
    exc = getattr(ns.errors, name)(*args)
    exc._pyroTraceback = list(TB)
    for key, value in attrs.items():
        setattr(exc, key, value)
    return exc


def _builtin(ns: SimpleNamespace, exc: BaseException) -> BaseException:
    exc._pyroTraceback = list(TB)  # type: ignore[attr-defined]
    return exc


PYRO4_ERROR_NAMES = sorted(n for n in errors.ERRORS_BY_NAME if n != "PluginError")  # Pyro4 has no PluginError
#: name -> (make(ns) -> value, formats that cannot carry it: there both sides refuse it)
SAMPLES: dict[str, tuple[Callable[[SimpleNamespace], Any], set[str]]] = {
    "int": (lambda ns: 42, set()),
    "bigint": (lambda ns: -(2**100), set()),
    "text": (lambda ns: "h\u00e9llo \u20ac \U0001f40d", set()),
    "floats": (lambda ns: [1.5, -0.0, 1e300, math.inf], set()),
    "containers": (lambda ns: {"a": [1, (2, 3)], "b": {"c": None, "d": True}}, set()),
    "set": (lambda ns: {1, 2, 3}, set()),
    "bytes": (lambda ns: b"\x00\x01bytes", {"json"}),
    "complex": (lambda ns: complex(1, -2), {"json"}),
    "datetime": (lambda ns: [datetime.datetime(2024, 1, 2, 3, 4, 5, 6), datetime.date(2024, 1, 2)], {"marshal"}),
    "uuid_decimal": (lambda ns: [uuid.UUID(int=12345), decimal.Decimal("1.25")], {"marshal"}),
    "builtin_exception": (lambda ns: _builtin(ns, ValueError("boom", 42)), set()),
    "stop_iteration": (lambda ns: _builtin(ns, StopIteration()), set()),
    "uri": (lambda ns: ns.URI("PYRO:obj@localhost:9090"), set()),
    "uri_unix": (lambda ns: ns.URI("PYRO:obj@./u:/tmp/sock"), set()),
    "uri_ipv6": (lambda ns: ns.URI("PYRONAME:name@[::1]:9090"), set()),
    "wrapper": (lambda ns: ns.Wrapper(_error(ns, "DaemonError", "unknown object")), set()),
    "batch_result": (lambda ns: [2, ns.Wrapper(_builtin(ns, ValueError("x")))], set()),
    "uris_in_list": (lambda ns: [ns.URI("PYRO:a@h:1"), ns.URI("PYRO:b@h:2")], set()),
    "handshake": (lambda ns: {"handshake": "hello", "meta": {"methods": ["a"], "oneway": [], "attrs": []}}, set()),
}
for _name in PYRO4_ERROR_NAMES:
    SAMPLES[f"error_{_name}"] = (lambda ns, n=_name: _error(ns, n, f"{n} text", extra=[1, 2]), set())
#: (format, sample) pairs stock Pyro4 cannot send but we can: its marshal converts only top-level objects
#: ("unmarshallable object" for the _ExceptionWrapper in a batch result); ours converts nested ones too,
#: and stock Pyro4 decodes the result (test_cross_decoding)
PYRO4_CANNOT_SEND = {("marshal", "batch_result"), ("marshal", "uris_in_list")}


@pytest.mark.parametrize("sample", sorted(SAMPLES))
@pytest.mark.parametrize("name", NAMES)
def test_same_bytes_as_pyro4(name: str, sample: str) -> None:
    make, refused = SAMPLES[sample]
    if name in refused:
        with pytest.raises(errors.SerializeError):
            ours(name).dumps(make(OUR_NS))
        with pytest.raises(Exception):  # noqa: B017 - Pyro4 raises TypeError / ValueError / SerializeError
            theirs(name).dumps(make(PYRO4_NS))
        return
    if (name, sample) in PYRO4_CANNOT_SEND:
        with pytest.raises(ValueError, match="unmarshallable object"):
            theirs(name).dumps(make(PYRO4_NS))
        assert ours(name).dumps(make(OUR_NS))
        return
    assert ours(name).dumps(make(OUR_NS)) == theirs(name).dumps(make(PYRO4_NS))


CALLS = [
    ("thing", "add", (1,), {"b": 2}),
    ("thing", "add", [1, "two"], {}),
    ("Pyro.Daemon", "get_metadata", ["obj"], {}),
    ("thing", "\u00e9t\u00e9", ("\U0001f40d", [1.5, None]), {"k\u00e9y": {"x": (1, 2)}}),
    ("thing", "__getattr__", ("attr",), None),
    ("thing", "<batch>", [("add", (1,), {}), ("fail", (), {})], None),
]


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c[1])
@pytest.mark.parametrize("name", NAMES)
def test_same_call_bytes_as_pyro4(name: str, call: tuple) -> None:
    if name == "marshal" and call[3] is None:
        # Pyro4 4.82 bug (PYRO4-PROTOCOL 2.17): its marshal dumpsCall crashes on kwargs None, so a marshal
        # proxy cannot read properties or send batches. We send the tuple; Pyro4 can still decode it.
        with pytest.raises(AttributeError):
            theirs(name).dumpsCall(*call)
        assert theirs(name).loadsCall(ours(name).dumps_call(*call))[3] is None
        return
    assert ours(name).dumps_call(*call) == theirs(name).dumpsCall(*call)


@pytest.mark.parametrize("name", ["json", "marshal", "msgpack"])
def test_plain_objects_keep_their_class_tag_unlike_pyro4_on_py311(name: str) -> None:
    """PYRO4-PROTOCOL 2.17: on Python >= 3.11 stock Pyro4's class_to_dict calls the new default
    ``object.__getstate__`` and sends plain objects as bare ``vars()`` without ``__class__``, so the peer
    silently gets a dict. We skip the default __getstate__ and send the tag, so the receiver refuses the
    unregistered class (as Pyro4 < 3.11 did) instead of handing over a look-alike dict."""

    class Plain:
        def __init__(self) -> None:
            self.a = 1

    p_data = theirs(name).dumps(Plain())
    if sys.version_info >= (3, 11):
        assert b"__class__" not in p_data
        assert theirs(name).loads(p_data) == {"a": 1}
    our_data = ours(name).dumps(Plain())
    assert b"__class__" in our_data
    with pytest.raises(errors.SerializeError, match="unsupported serialized class"):
        ours(name).loads(our_data)
    with pytest.raises(Pyro4.errors.SerializeError):
        theirs(name).loads(our_data)


def test_json_frozenset_is_an_array_where_pyro4_refuses() -> None:
    assert ours("json").loads(ours("json").dumps(frozenset({7}))) == [7]
    with pytest.raises(Pyro4.errors.SerializeError):
        theirs("json").dumps(frozenset({7}))


# ---- (c) each side decodes the other's bytes ------------------------------------------------------
def norm(value: Any) -> Any:
    """A comparable form of a decoded value from either side."""
    if isinstance(value, (URI, Pyro4.core.URI)):
        return ("URI", str(value))
    if isinstance(value, (_ExceptionWrapper, Pyro4.futures._ExceptionWrapper)):
        return ("wrapper", norm(value.exception))
    if isinstance(value, BaseException):
        family = "errors" if isinstance(value, (errors.PyroError, Pyro4.errors.PyroError)) else "builtins"
        return (family, type(value).__name__, norm(list(value.args)), norm(vars(value)))
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def _kinds(value: Any, our_side: bool) -> None:
    """Each side decodes to its own classes."""
    uri, wrapper, base = (URI, _ExceptionWrapper, errors.PyroError) if our_side else (
        Pyro4.core.URI, Pyro4.futures._ExceptionWrapper, Pyro4.errors.PyroError)
    if isinstance(value, (URI, Pyro4.core.URI)):
        assert isinstance(value, uri)
    elif isinstance(value, (_ExceptionWrapper, Pyro4.futures._ExceptionWrapper)):
        assert isinstance(value, wrapper)
        _kinds(value.exception, our_side)
    elif isinstance(value, (errors.PyroError, Pyro4.errors.PyroError)):
        assert isinstance(value, base)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _kinds(v, our_side)


@pytest.mark.parametrize("sample", sorted(SAMPLES))
@pytest.mark.parametrize("name", NAMES)
def test_cross_decoding(name: str, sample: str) -> None:
    make, refused = SAMPLES[sample]
    if name in refused:
        pytest.skip(f"{name} cannot carry this value (checked in test_same_bytes_as_pyro4)")
    from_us = ours(name).dumps(make(OUR_NS))
    by_pyro4 = theirs(name).loads(from_us)
    if (name, sample) in PYRO4_CANNOT_SEND:
        from_pyro4 = from_us  # nothing to compare with: Pyro4 cannot encode it (see above)
    else:
        from_pyro4 = theirs(name).dumps(make(PYRO4_NS))
    by_us = ours(name).loads(from_pyro4)
    _kinds(by_pyro4, our_side=False)
    _kinds(by_us, our_side=True)
    assert norm(by_pyro4) == norm(by_us) == norm(ours(name).loads(from_us))


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c[1])
@pytest.mark.parametrize("name", NAMES)
def test_cross_decoding_calls(name: str, call: tuple) -> None:
    from_us = ours(name).dumps_call(*call)
    assert norm(theirs(name).loadsCall(from_us)) == norm(ours(name).loads_call(from_us))
    if not (name == "marshal" and call[3] is None):  # Pyro4's marshal cannot encode these (see above)
        assert norm(ours(name).loads_call(theirs(name).dumpsCall(*call))) == norm(theirs(name).loadsCall(from_us))


@pytest.mark.parametrize("name", NAMES)
def test_cross_decoding_objects_in_call_arguments(name: str) -> None:
    uri, p_uri = URI("PYRO:obj@localhost:9090"), Pyro4.core.URI("PYRO:obj@localhost:9090")
    decoded = theirs(name).loadsCall(ours(name).dumps_call("o", "m", [uri], {"u": uri}))
    assert isinstance(decoded[2][0], Pyro4.core.URI) and str(decoded[3]["u"]) == str(uri)
    decoded = ours(name).loads_call(theirs(name).dumpsCall("o", "m", [p_uri], {"u": p_uri}))
    assert decoded[2][0] == uri and decoded[3]["u"] == uri


def test_pyro4_msgpack_does_not_decode_ext_types_in_calls() -> None:
    """Pyro4 4.82 bug: its msgpack loadsCall has no ext_hook, so complex/big-int/date arguments reach the
    method as raw ExtType. We decode them in calls as in results."""
    data = ours("msgpack").dumps_call("o", "m", [complex(1, 2), 2**70], {})
    assert isinstance(theirs("msgpack").loadsCall(data)[2][0], msgpack.ExtType)
    assert ours("msgpack").loads_call(data)[2] == [complex(1, 2), 2**70]


def test_pyro4_reads_serpent_bytes_literals() -> None:
    cfg = Config()
    cfg.SERPENT_BYTES_REPR = True
    data = SerpentSerializer(cfg).dumps([b"\x00\xffraw", bytearray(b"ba")])
    assert theirs("serpent").loads(data) == [b"\x00\xffraw", b"ba"]


@pytest.mark.parametrize("name", ["serpent", "json", "msgpack", "pickle"])
def test_cross_decoding_proxies(name: str) -> None:
    from pyroplug.core.proxy import Proxy

    p_proxy = Pyro4.core.Proxy("PYRO:obj@localhost:9090")
    p_proxy._pyroHandshake = "hi"
    ours_decoded = ours(name).loads(theirs(name).dumps(p_proxy))
    assert isinstance(ours_decoded, Proxy) and ours_decoded._pyroUri == URI("PYRO:obj@localhost:9090")
    assert ours_decoded._pyroHandshake == "hi"
    our_proxy = Proxy("PYRO:obj@localhost:9090")
    decoded = theirs(name).loads(ours(name).dumps(our_proxy))
    assert isinstance(decoded, Pyro4.core.Proxy) and str(decoded._pyroUri) == "PYRO:obj@localhost:9090"
