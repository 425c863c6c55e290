"""Codec benchmark: one small call and its result, encoded and decoded, pyroplug vs stock Pyro4 4.82.

One operation is what a call costs in codec work on both ends, without sockets: the client
serializes and frames the call, the daemon receives and deserializes it, then serializes and frames
the result (with the CORR annotation Pyro4's daemon always attaches), and the client decodes it.

* pyroplug: the serializer plugin instance is taken from the registry once, outside the timed loop;
  framing is :func:`pyroplug.core.protocol.encode_parts` and a :class:`MessageReader` fed the bytes.
* Pyro4: ``Pyro4.util.get_serializer(name)`` with ``serializeCall`` / ``deserializeCall`` /
  ``serializeData`` / ``deserializeData`` and ``Pyro4.message.Message(...).to_bytes()`` /
  ``Message.recv`` reading from an in-memory connection.

The "framing only" case frames and unframes the same pre-serialized payloads, with no serializer.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable
from typing import Any

from benchmarks import Result, compare
from pyroplug.core.config import Config
from pyroplug.core.plugins import BUILTIN_PLUGINS, make_plugin_manager
from pyroplug.core.protocol import MSG_INVOKE, MSG_RESULT, MessageReader, encode_parts
from pyroplug.core.registry import Registry

NAME = "codec"
SERIALIZERS = ("serpent", "marshal", "json", "msgpack", "pickle")
#: required pyroplug/Pyro4 ratio per case
TARGETS = {"serpent": 2.0, "marshal": 2.0}

OBJECT_ID = "obj_5a0e9d3f2c8b4e7a9d1c6b3a8f2e4d7c"
METHOD = "compute"
VARGS = (42, "hello", 3.5)
KWARGS = {"scale": 2}
RESULT = {"status": "ok", "values": [1, 2, 3]}
CORR = uuid.UUID("8d3f0c1e-5b7a-4c2d-9e6f-1a2b3c4d5e6f").bytes
SEQ = 17


class _MemoryConnection:
    """What Pyro4's ``Message.recv`` reads from: ``recv(n)`` returns the next n bytes."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def recv(self, size: int) -> bytes:
        pos = self.pos
        self.pos = pos + size
        return self.data[pos : pos + size]

    def close(self) -> None:
        pass


def _pyro4() -> tuple[Any, Any]:
    import Pyro4.message
    import Pyro4.util

    return Pyro4.message, Pyro4.util


def pyroplug_serializers() -> tuple[dict[str, Any], dict[str, str]]:
    """Serializer plugin instances by name, resolved once through a Registry; and why any are missing.

    Uses every builtin serializer module that imports (the others are being written elsewhere).
    """
    usable: list[str] = []
    missing: dict[str, str] = {}
    for dotted in BUILTIN_PLUGINS:
        if ".serializers." not in dotted:
            continue
        try:
            importlib.import_module(dotted)
        except Exception as exc:  # noqa: BLE001 - report and measure the rest
            missing[dotted.rsplit(".", 1)[1]] = f"{type(exc).__name__}: {exc}"
        else:
            usable.append(dotted)
    registry = Registry.build(make_plugin_manager(disabled="", builtins=tuple(usable), autoload=False))
    config = Config()
    instances = {}
    for name in SERIALIZERS:
        if name in registry.serializers:
            instances[name] = registry.serializer(name)(config)
        else:
            missing.setdefault(name, "no such serializer in the registry")
    return instances, missing


# ---- the two implementations of one call+result ----------------------------------------------
def pyroplug_roundtrip(serializer: Any) -> Callable[[], Any]:
    """Encode+decode a call and its result with pyroplug's framing and a serializer plugin."""
    sid = serializer.serializer_id
    dumps_call, loads_call = serializer.dumps_call, serializer.loads_call
    dumps, loads = serializer.dumps, serializer.loads
    server_side = MessageReader()
    client_side = MessageReader()
    annotations = {"CORR": CORR}

    def roundtrip() -> Any:
        head, payload = encode_parts(MSG_INVOKE, dumps_call(OBJECT_ID, METHOD, VARGS, KWARGS), sid, 0, SEQ)
        server_side.feed(head + payload)
        request = server_side.next_message()
        call = loads_call(request.data)  # type: ignore[union-attr]
        head, payload = encode_parts(MSG_RESULT, dumps(RESULT), sid, 0, request.seq, annotations)  # type: ignore[union-attr]
        client_side.feed(head + payload)
        reply = client_side.next_message()
        return call, loads(reply.data)  # type: ignore[union-attr]

    return roundtrip


def pyro4_roundtrip(name: str) -> Callable[[], Any]:
    """The same with Pyro4 4.82's serializer and Message class."""
    message, util = _pyro4()
    Message = message.Message
    compressed_flag = message.FLAGS_COMPRESSED
    serializer = util.get_serializer(name)
    sid = serializer.serializer_id
    annotations = {"CORR": CORR}

    def roundtrip() -> Any:
        data, compressed = serializer.serializeCall(OBJECT_ID, METHOD, VARGS, KWARGS, compress=False)
        flags = compressed_flag if compressed else 0
        wire = Message(message.MSG_INVOKE, data, sid, flags, SEQ).to_bytes()
        request = Message.recv(_MemoryConnection(wire), [message.MSG_INVOKE])
        call = serializer.deserializeCall(request.data, compressed=request.flags & compressed_flag)
        data, compressed = serializer.serializeData(RESULT, compress=False)
        flags = compressed_flag if compressed else 0
        wire = Message(message.MSG_RESULT, data, sid, flags, request.seq, annotations=annotations).to_bytes()
        reply = Message.recv(_MemoryConnection(wire), [message.MSG_RESULT])
        return call, serializer.deserializeData(reply.data, compressed=reply.flags & compressed_flag)

    return roundtrip


def framing_pair() -> tuple[Callable[[], Any], Callable[[], Any]]:
    """Framing alone: the serpent call and result payloads, pre-serialized, framed and unframed."""
    message, util = _pyro4()
    Message = message.Message
    serpent = util.get_serializer("serpent")
    call_payload, _ = serpent.serializeCall(OBJECT_ID, METHOD, VARGS, KWARGS)
    result_payload, _ = serpent.serializeData(RESULT)
    annotations = {"CORR": CORR}
    server_side = MessageReader()
    client_side = MessageReader()

    def ours() -> Any:
        head, payload = encode_parts(MSG_INVOKE, call_payload, 1, 0, SEQ)
        server_side.feed(head + payload)
        request = server_side.next_message()
        head, payload = encode_parts(MSG_RESULT, result_payload, 1, 0, request.seq, annotations)  # type: ignore[union-attr]
        client_side.feed(head + payload)
        return request, client_side.next_message()

    def theirs() -> Any:
        wire = Message(message.MSG_INVOKE, call_payload, 1, 0, SEQ).to_bytes()
        request = Message.recv(_MemoryConnection(wire), [message.MSG_INVOKE])
        wire = Message(message.MSG_RESULT, result_payload, 1, 0, request.seq, annotations=annotations).to_bytes()
        return request, Message.recv(_MemoryConnection(wire), [message.MSG_RESULT])

    request, reply = ours()
    their_request, their_reply = theirs()
    assert bytes(request.data) == their_request.data and bytes(reply.data) == their_reply.data
    assert dict(reply.annotations) == their_reply.annotations == annotations
    return ours, theirs


def _normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def _check_same(name: str, ours: Callable[[], Any], theirs: Callable[[], Any]) -> None:
    """Both sides must decode the same call and result before their speed means anything."""
    got, expected = _normalise(ours()), _normalise(theirs())
    if got != expected:
        raise AssertionError(f"{name}: pyroplug decoded {got!r}, Pyro4 decoded {expected!r}")


def run(quick: bool = False) -> list[Result]:
    """Measure framing alone and the full call+result path for every serializer."""
    rounds, round_time = (3, 0.1) if quick else (5, 0.3)
    results = []
    ours, theirs = framing_pair()
    rate_ours, rate_theirs = compare(ours, theirs, rounds, round_time)
    results.append(Result(NAME, "framing only (call+result)", rate_ours, rate_theirs))
    instances, missing = pyroplug_serializers()
    for name in SERIALIZERS:
        case = f"{name} call+result"
        if name not in instances:
            results.append(Result(NAME, case, 0.0, None, note=f"skipped: {missing.get(name, 'unavailable')}"))
            continue
        ours = pyroplug_roundtrip(instances[name])
        theirs = pyro4_roundtrip(name)
        _check_same(name, ours, theirs)
        rate_ours, rate_theirs = compare(ours, theirs, rounds, round_time)
        results.append(Result(NAME, case, rate_ours, rate_theirs, target=TARGETS.get(name)))
    return results


if __name__ == "__main__":
    from benchmarks.__main__ import format_table

    print(format_table(run()))
