"""SerializedBlob: call payloads that routers forward without deserializing them (FLAGS_KEEPSERIALIZED)."""

from __future__ import annotations

import marshal
from typing import Any

from pyroplug.core import errors
from pyroplug.core.protocol import Message

__all__ = ["SerializedBlob", "blob_call"]


class SerializedBlob:
    """A payload that travels untouched: pass it as the only argument of a call.

    ``SerializedBlob(info, data)`` on the sending side serializes ``data`` as the call's arguments;
    the receiving method gets ``SerializedBlob(info, message, is_blob=True)`` and calls
    :meth:`deserialized` only if and when it needs the value. Passing such a received blob on to
    another proxy forwards the original bytes without decoding them.
    """

    def __init__(self, info: Any, data: Any, is_blob: bool = False) -> None:
        if is_blob and not isinstance(data, Message):
            raise TypeError("data should be a protocol message object if is_blob is true")
        self.info = info
        self._data = data
        self._contains_blob = is_blob

    def deserialized(self) -> Any:
        """The value: decoded from the received message (once asked), or the data given."""
        if not self._contains_blob:
            return self._data
        from pyroplug.core.config import config
        from pyroplug.core.registry import get_registry

        msg: Message = self._data
        ser = get_registry().serializer_by_id(msg.serializer_id)(config)
        return _call_vargs(ser, msg.data)


def _call_vargs(ser: Any, data: Any) -> Any:
    """The vargs slot of a serialized call, whatever its type (a blob's data need not be a sequence).

    Decoded with the serializer's plain ``loads`` (as Pyro4 does), since the call check of ``loads_call``
    would refuse data that is not a list or tuple.
    """
    call = ser.loads(data)
    if type(call) is dict and "params" in call:  # the JSON call form
        return call["params"]
    if type(call) in (list, tuple) and len(call) == 4:
        return call[2]
    raise errors.SerializeError("invalid call message in SerializedBlob")


def blob_call(msg: Message) -> tuple[str, str, tuple[Any, ...], dict[str, Any]]:
    """The daemon side: (object id, method, (blob,), {}) from a KEEPSERIALIZED message."""
    raw = msg.annotations.get("BLBI")
    if raw is None:
        raise errors.ProtocolError("keep-serialized message without BLBI annotation")
    try:
        info, object_id, method = marshal.loads(raw)
    except (ValueError, EOFError, TypeError) as exc:
        raise errors.SerializeError(f"invalid BLBI annotation: {exc}") from None
    return object_id, method, (SerializedBlob(info, msg, is_blob=True),), {}


def blob_annotation(blob: SerializedBlob, object_id: str, method: str) -> bytes:
    """The proxy side: the marshal-encoded BLBI annotation value."""
    return marshal.dumps((blob.info, object_id, method))
