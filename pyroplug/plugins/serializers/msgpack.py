"""The msgpack serializer (id 6, optional): msgpack with Pyro4's ext types 0x30-0x33."""

from __future__ import annotations

import array
import datetime
import decimal
import numbers
import struct
import threading
import uuid
from typing import Any, ClassVar

from pyroplug.core import errors
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.serializer import CallTuple, Serializer, check_call, dict_to_class, wrap_error

try:
    import msgpack as _msgpack
except ImportError:  # pragma: no cover - exercised only without the 'msgpack' extra
    _msgpack = None

__all__ = ["MsgpackSerializer", "pyroplug_serializers"]

#: Pyro4's ext type codes; the payloads use the platform's native byte order and sizes, as Pyro4 does
EXT_COMPLEX, EXT_BIGINT, EXT_DATETIME, EXT_DATE = 0x30, 0x31, 0x32, 0x33
_pack_dd, _unpack_dd = struct.Struct("dd").pack, struct.Struct("dd").unpack
_pack_d, _unpack_d = struct.Struct("d").pack, struct.Struct("d").unpack
_pack_l, _unpack_l = struct.Struct("l").pack, struct.Struct("l").unpack
#: what msgpack packs by itself (the default hook's result must be one of these)
_NATIVE = (type(None), bool, int, float, str, bytes, bytearray, memoryview, list, tuple, dict)


def _object_hook(obj: dict) -> Any:
    if "__class__" in obj:
        return dict_to_class(obj)
    return obj


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_COMPLEX:
        real, imag = _unpack_dd(data)
        return complex(real, imag)
    if code == EXT_BIGINT:
        return int(data)
    if code == EXT_DATETIME:
        return datetime.datetime.fromtimestamp(_unpack_d(data)[0])
    if code == EXT_DATE:
        return datetime.date.fromordinal(_unpack_l(data)[0])
    raise errors.SerializeError(f"invalid ext code for msgpack: {code}")


class MsgpackSerializer(Serializer):
    """Pyro4's msgpack format: ``packb(use_bin_type=True)`` / ``unpackb(raw=False)``.

    Sets become arrays; UUID and Decimal strings; complex, ints beyond 64 bits, naive datetimes and dates
    use Pyro4's ext types (native byte order: platform dependent, as in Pyro4). Class dicts are rebuilt
    by an object hook while unpacking. Unlike stock Pyro4 the ext types are decoded in calls too.
    Needs ``pip install pyroplug[msgpack]``.
    """

    name: ClassVar[str] = "msgpack"
    serializer_id: ClassVar[int] = 6
    #: large ``bytes`` are framed as a big-endian 4-byte length and the raw bytes: sent without a copy
    #: (see :mod:`pyroplug.core.gather`)
    bytes_length_field: ClassVar[str] = "big"
    roundtrip_types = frozenset({
        "none", "bool", "int", "bigint", "float", "nan", "str", "bytes", "list", "dict", "complex",
        "datetime", "date", "nested_objects",
    })

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        if _msgpack is None:
            raise errors.PluginError("the msgpack serializer needs msgpack: pip install pyroplug[msgpack]")
        self._packb = _msgpack.packb
        # packb builds a Packer per call; this one is reused (autoreset; it resets itself after an error)
        self._packer = _msgpack.Packer(use_bin_type=True, default=self._default)
        self._packer_lock = threading.Lock()
        self._unpackb = _msgpack.unpackb
        self._ext = _msgpack.ExtType

    def _default(self, obj: Any) -> Any:
        """Pyro4's conversions for what msgpack cannot carry, then the replace hook and class dicts."""
        if isinstance(obj, (set, frozenset)):
            return tuple(obj)
        if isinstance(obj, uuid.UUID):
            return str(obj)
        if isinstance(obj, complex):
            return self._ext(EXT_COMPLEX, _pack_dd(obj.real, obj.imag))
        if isinstance(obj, datetime.datetime):
            if obj.tzinfo:
                raise errors.SerializeError("msgpack cannot serialize datetime with timezone info")
            return self._ext(EXT_DATETIME, _pack_d(obj.timestamp()))
        if isinstance(obj, datetime.date):
            return self._ext(EXT_DATE, _pack_l(obj.toordinal()))
        if isinstance(obj, decimal.Decimal):
            return str(obj)
        if isinstance(obj, numbers.Number):
            return self._ext(EXT_BIGINT, str(obj).encode("ascii"))
        if isinstance(obj, array.array):
            return obj.tounicode() if obj.typecode == "u" else obj.tolist()
        converted = self.convert(obj)
        if converted is not obj and not isinstance(converted, _NATIVE):
            return self._default(converted)  # msgpack calls default once: convert the replacement here
        return converted

    def dumps(self, data: Any) -> bytes:
        """Pack a value (with a reused Packer when no other thread or nested call is using it)."""
        try:
            lock = self._packer_lock
            if lock.acquire(False):
                try:
                    return self._packer.pack(data)  # type: ignore[no-any-return]
                finally:
                    lock.release()
            return self._packb(data, use_bin_type=True, default=self._default)
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "msgpack cannot serialize") from exc

    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        """Unpack a value, rebuilding Pyro4 class dicts and ext types."""
        try:
            # a memoryview is a large body: unpacked in place, maps checked by the hook instead of a byte scan
            if type(data) is memoryview or b"__class__" in data:
                return self._unpackb(data, raw=False, ext_hook=_ext_hook, object_hook=_object_hook)
            return self._unpackb(data, raw=False, ext_hook=_ext_hook)
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "invalid msgpack data") from exc

    def loads_call(self, data: bytes | bytearray | memoryview) -> CallTuple:
        """Unpack a call array ``[obj, method, [vargs], {kwargs}]``."""
        return check_call(self.loads(data))


@hookimpl
def pyroplug_serializers() -> tuple[type[Serializer], ...]:
    """The msgpack serializer, or nothing when msgpack is not installed."""
    return (MsgpackSerializer,) if _msgpack is not None else ()
