"""Zero-copy sends of large ``bytes`` values: the serialized message around them as a gather list.

Serializing a call or result that carries a large ``bytes`` object copies it into the serializer's
output (into fresh pages, a page fault each, which costs more than the copy), and some serializers then
scan that output. When the serializer frames ``bytes`` as a 4-byte length field followed by the raw
bytes (marshal, pickle, msgpack declare it with ``bytes_length_field``), the value is serialized with a
64 KiB placeholder in its place instead, and the output is cut around the placeholder:
``[before + length field, value, after]``, which a gathering send (``sendmsg``) writes without copying.
The receiver cannot tell the difference: the bytes on the wire are the ones the serializer would write.
"""

from __future__ import annotations

import os
from typing import Any, Literal

__all__ = ["THRESHOLD", "call_parts", "value_parts"]

#: ``bytes`` values at least this large are sent without being copied
THRESHOLD = 1 << 20
#: the stand-in: large enough that every format frames it like the real value (pickle writes bytes of
#: 64 KiB or more outside its frames, msgpack uses bin 32 from 64 KiB on), random so it occurs nowhere else
_PLACEHOLDER = os.urandom(65536)
_SIZE = len(_PLACEHOLDER)
_FIELDS = {order: _SIZE.to_bytes(4, order) for order in ("little", "big")}


def call_parts(ser: Any, obj: str, method: str, vargs: Any, kwargs: Any) -> list[Any] | None:
    """The serialized call as a gather list when exactly one positional argument is a large ``bytes``.

    None when there is no such argument, more than one, or the serializer does not frame bytes with a
    plain length field (then the caller serializes as usual).
    """
    order = getattr(ser, "bytes_length_field", None)
    if order not in _FIELDS:
        return None
    index = -1
    for i, value in enumerate(vargs):
        if type(value) is bytes and len(value) >= THRESHOLD:
            if index >= 0:
                return None
            index = i
    if index < 0:
        return None
    args = list(vargs)
    payload = args[index]
    args[index] = _PLACEHOLDER
    return _splice(ser.dumps_call(obj, method, tuple(args) if type(vargs) is tuple else args, kwargs), payload, order)


def value_parts(ser: Any, value: Any) -> list[Any] | None:
    """The serialized value as a gather list when it is a large ``bytes`` (else None, as above)."""
    if type(value) is not bytes or len(value) < THRESHOLD:
        return None
    order = getattr(ser, "bytes_length_field", None)
    if order not in _FIELDS:
        return None
    return _splice(ser.dumps(_PLACEHOLDER), value, order)


def _splice(out: bytes, payload: bytes, order: Literal["little", "big"]) -> list[Any] | None:
    """Cut ``out`` around the one placeholder and put ``payload`` (with its length) in its place."""
    if len(payload) >= 1 << 32:
        return None
    start = out.find(_PLACEHOLDER)
    if start < 4 or out[start - 4 : start] != _FIELDS[order] or out.find(_PLACEHOLDER, start + _SIZE) >= 0:
        return None  # not framed as declared: serialize the usual way
    end = start + _SIZE
    return [out[: start - 4] + len(payload).to_bytes(4, order), payload, out[end:]]
