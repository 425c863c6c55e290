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
from pyroplug.core.protocol import MSG_RESULT, SplitBody, register_splitter
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


def _locate_bytes(msgtype: int, prefix: memoryview, size: int) -> tuple[int, int] | None:
    """Where the one large ``bytes`` value of a msgpack payload is (see ``register_splitter``).

    A result that is a bin 32 and nothing else, or a call array ``[obj, method, [args], {kwargs}]`` one
    of whose positional arguments is a bin 32: (offset, length) of its raw bytes; else None.
    """
    if msgtype == MSG_RESULT:
        if len(prefix) >= 5 and prefix[0] == 0xC6 and 5 + int.from_bytes(prefix[1:5], "big") == size:
            return 5, size - 5
        return None
    if len(prefix) < 8 or prefix[0] != 0x94:  # the call: a fixarray of 4
        return None
    unpacker = _msgpack.Unpacker(raw=False, max_buffer_size=len(prefix))
    unpacker.feed(prefix)
    try:
        unpacker.read_array_header()
        unpacker.skip()  # object id
        unpacker.skip()  # method name
        nargs = unpacker.read_array_header()
        for _ in range(nargs):
            pos = unpacker.tell()
            if pos + 5 <= len(prefix) and prefix[pos] == 0xC6:
                length = int.from_bytes(prefix[pos + 1 : pos + 5], "big")
                if length >= _SPLIT_MIN and pos + 5 + length <= size:
                    return pos + 5, length
            unpacker.skip()
    except Exception:  # noqa: BLE001 - not a call, or the value starts beyond the prefix
        return None
    return None


_SPLIT_MIN = 1 << 20


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
        if type(data) is SplitBody:
            return self._loads_split(data)
        try:
            # a memoryview is a large body: unpacked in place, maps checked by the hook instead of a byte scan
            if type(data) is memoryview or b"__class__" in data:
                return self._unpackb(data, raw=False, ext_hook=_ext_hook, object_hook=_object_hook)
            return self._unpackb(data, raw=False, ext_hook=_ext_hook)
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "invalid msgpack data") from exc

    def _loads_split(self, body: SplitBody) -> Any:
        """Unpack a payload whose large bin was received apart (see ``_locate_bytes``): the value is put
        back in its place as the very bytes object received."""
        head, tail = body.head, body.tail
        try:
            if len(head) == 5 and head[0] == 0xC6 and not tail:  # a result: just the bytes
                return body.value
            unpacker = _msgpack.Unpacker(raw=False, ext_hook=_ext_hook, object_hook=_object_hook,
                                         max_buffer_size=max(len(head), len(tail), 1024))
            unpacker.feed(head)
            if unpacker.read_array_header() != 4:
                raise ValueError("not a call array")
            obj = unpacker.unpack()
            method = unpacker.unpack()
            nargs = unpacker.read_array_header()
            args = []
            while unpacker.tell() < len(head) - 5:
                args.append(unpacker.unpack())
            if unpacker.tell() != len(head) - 5 or len(args) >= nargs:
                raise ValueError("bin value out of place")
            args.append(body.value)
            unpacker = _msgpack.Unpacker(raw=False, ext_hook=_ext_hook, object_hook=_object_hook,
                                         max_buffer_size=max(len(tail), 1024))
            unpacker.feed(tail)
            for _ in range(nargs - len(args)):
                args.append(unpacker.unpack())
            kwargs = unpacker.unpack()
            if unpacker.tell() != len(tail):
                raise ValueError("extra data after the call")
            return [obj, method, args, kwargs]
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "invalid msgpack data") from exc

    def loads_call(self, data: bytes | bytearray | memoryview) -> CallTuple:
        """Unpack a call array ``[obj, method, [vargs], {kwargs}]``."""
        return check_call(self.loads(data))


if _msgpack is not None:
    register_splitter(MsgpackSerializer.serializer_id, _locate_bytes)


@hookimpl
def pyroplug_serializers() -> tuple[type[Serializer], ...]:
    """The msgpack serializer, or nothing when msgpack is not installed."""
    return (MsgpackSerializer,) if _msgpack is not None else ()
