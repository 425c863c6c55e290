"""The marshal serializer (id 3): CPython's marshal format, version 4."""

from __future__ import annotations

import array
import marshal as _marshal
import re
import uuid
from typing import Any, ClassVar

from pyroplug.core import errors
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.serializer import CallTuple, Serializer, check_call, recreate_classes, wrap_error

__all__ = ["MarshalSerializer", "pyroplug_serializers"]

_MARSHALABLE = (str, int, float, type(None), bool, complex, bytes, bytearray, tuple, set, frozenset, list, dict)
#: the same as exact types: values of these need no conversion at the top level
_MARSHALABLE_TYPES = frozenset(_MARSHALABLE)

#: a list or tuple header ('[' / '(' with or without FLAG_REF) whose 4-byte little-endian element count is
#: a valid one (< 2**31) of at least 4096: smaller claims cost little even when false (found overlapping)
_SEQ_HEADER = re.compile(rb"(?=[\[(\xdb\xa8](...[\x01-\x7f]|..[\x01-\xff]\x00|.[\x10-\xff]\x00\x00))", re.S)
#: either of the two things small data is searched for (a large claim, a class dict): one search finds
#: that there is neither, the usual case (one scan of the bytes instead of two)
_SUSPECT = re.compile(_SEQ_HEADER.pattern + rb"|__class__", re.S)
_LEN32 = frozenset(b"stuaA")
_SEQ32 = frozenset(b"([<>")
_FIXED = {ord("i"): 4, ord("r"): 4, ord("g"): 8, ord("y"): 16}
_EMPTY = frozenset(b"NFTS.")


#: data larger than this is first walked exactly (large strings are skipped, not scanned) ...
_WALK_FIRST = 65536
#: ... for at most this many objects; object-dense data is then searched by the regex instead
_WALK_BUDGET = 2048
#: the tag of class dicts, searched in a memoryview (large bodies) without copying it
_CLASS_TAG = re.compile(rb"__class__")


def _check_lengths(data: bytes | bytearray | memoryview) -> None:
    """Refuse list/tuple headers that claim more elements than bytes remain.

    CPython's marshal allocates (and for tuples zero-fills) a list or tuple of the claimed size before
    reading its elements: five bytes ``(\xff\xff\xff\x7f`` cost 16 GB and tens of seconds. One regex
    search finds large claims; only when one claims more than the rest of the data holds is the data
    walked exactly (a string or an int may merely contain such bytes). The walk refuses code objects,
    which no Pyro peer sends. Data larger than 64 KiB is walked exactly first (a few large strings cost a
    few steps, where the regex would scan every byte of them); only when it holds more than
    ``_WALK_BUDGET`` objects does the regex take over.
    """
    if len(data) > _WALK_FIRST and _walk(data, _WALK_BUDGET):
        return
    if _SEQ_HEADER.search(data) is None:
        return
    end = len(data)
    for match in _SEQ_HEADER.finditer(data):
        if int.from_bytes(match.group(1), "little") > end - match.start() - 5:
            _walk(data)
            return


def _walk(data: bytes | bytearray | memoryview, budget: int = -1) -> bool:
    """Walk marshal data exactly; SerializeError on an impossible length. False: ``budget`` objects ran out."""
    end, pos = len(data), 0
    todo = [1]  # objects still to read per nesting level; -1: a dict, read until its NULL
    while todo:
        if todo[-1] == 0:
            todo.pop()
            continue
        if not budget:
            return False
        budget -= 1
        if pos >= end:
            raise errors.SerializeError("invalid marshal data: truncated")
        code = data[pos] & 0x7F
        pos += 1
        if code == 0x30 and todo[-1] == -1:  # '0': the end of a dict
            todo.pop()
            continue
        if todo[-1] > 0:
            todo[-1] -= 1
        if code in _EMPTY:
            continue
        if code in _FIXED:
            pos += _FIXED[code]
        elif code in _LEN32 or code in _SEQ32 or code == 0x6C:  # 'l': a count of 2-byte digits
            size = int.from_bytes(data[pos:pos + 4], "little", signed=code == 0x6C)
            pos += 4
            if code == 0x6C:
                size = abs(size) * 2
            if size > end - pos:
                raise errors.SerializeError("invalid marshal data: a length exceeds the data")
            if code in _SEQ32:
                todo.append(size)
            else:
                pos += size
        elif code in (0x7A, 0x5A, 0x66):  # 'z', 'Z' short strings, 'f' float text: 1-byte length
            pos += 1 + (data[pos] if pos < end else 0)
        elif code == 0x78:  # 'x' complex as two float texts
            for _ in range(2):
                pos += 1 + (data[pos] if pos < end else 0)
        elif code == 0x29:  # ')' small tuple
            todo.append(data[pos] if pos < end else 0)
            pos += 1
        elif code == 0x7B:  # '{'
            todo.append(-1)
        elif code == 0x63:  # 'c'
            raise errors.SerializeError("invalid marshal data: code objects are refused")
        else:
            raise errors.SerializeError(f"invalid marshal data: type code {code:#x}")
    return True


def _find_class_dict(value: Any, budget: int = _WALK_BUDGET) -> bool | None:
    """Whether a decoded structure holds a ``"__class__"`` dict; None when ``budget`` objects ran out."""
    todo = [value]
    while todo:
        budget -= 1
        if not budget:
            return None
        item = todo.pop()
        t = type(item)
        if t is dict:
            if "__class__" in item:
                return True
            todo.extend(item.values())
        elif t is list or t is tuple or t is set or t is frozenset:
            todo.extend(item)
    return False


def _tagged(value: Any, data: bytes | bytearray | memoryview) -> bool:
    """Whether class dicts may need rebuilding: a byte search, or for a memoryview (a large body) a
    bounded look at the decoded ``value`` first (no copy of the data, no scan of its large strings)."""
    if type(data) is not memoryview:
        return b"__class__" in data
    found = _find_class_dict(value)
    return found if found is not None else _CLASS_TAG.search(data) is not None


class MarshalSerializer(Serializer):
    """Pyro4's marshal format (version 4). Calls carry vargs as a list.

    Like Pyro4, the top-level value (and each top-level call argument) is converted to a class dict when
    marshal cannot carry it, and for such values the bytes equal Pyro4's. Where stock Pyro4 then fails with
    "unmarshallable object" (an object nested in a container, such as the _ExceptionWrapper in a batch
    result or URIs in a list) we convert at every depth instead; any Pyro4 peer decodes that, since its
    receiving side rebuilds class dicts at every depth.

    Unlike stock Pyro4 4.82 (PYRO4-PROTOCOL 2.17) a call with kwargs None (``__getattr__``,
    ``__setattr__``, ``<batch>``) is sent as is instead of crashing, and list/tuple headers claiming more
    elements than the data holds are refused before marshal allocates them (see :func:`_check_lengths`).
    """

    name: ClassVar[str] = "marshal"
    serializer_id: ClassVar[int] = 3
    #: large ``bytes`` are framed as a little-endian 4-byte length and the raw bytes: sent without a copy
    #: (see :mod:`pyroplug.core.gather`)
    bytes_length_field: ClassVar[str] = "little"
    roundtrip_types = frozenset({
        "none", "bool", "int", "bigint", "float", "nan", "str", "bytes", "tuple", "list", "dict", "intkeys",
        "set", "emptyset", "frozenset", "complex", "nested_objects",
    })

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._dumps = _marshal.dumps
        self._loads = _marshal.loads

    def _marshallable(self, obj: Any) -> Any:
        if isinstance(obj, _MARSHALABLE):
            return obj
        if isinstance(obj, array.array):
            return obj.tounicode() if obj.typecode == "u" else obj.tolist()
        if isinstance(obj, uuid.UUID):
            return str(obj)
        converted = self.convert(obj)
        if converted is not obj and not isinstance(converted, dict):
            return self._marshallable(converted)  # the replace hook's result (a proxy) needs its class dict
        return converted

    def _deep(self, obj: Any) -> Any:
        """Convert unmarshallable objects at any depth (containers are rebuilt, keys and set items kept)."""
        t = type(obj)
        if t is list:
            return [self._deep(v) for v in obj]
        if t is tuple:
            return tuple([self._deep(v) for v in obj])
        if t is dict:
            return {k: self._deep(v) for k, v in obj.items()}
        if t in _MARSHALABLE:
            return obj
        converted = self._marshallable(obj)
        return obj if converted is obj else self._deep(converted)

    def dumps(self, data: Any) -> bytes:
        """Marshal a value, converting it first when it is not marshallable itself."""
        try:
            try:
                if type(data) in _MARSHALABLE:
                    return self._dumps(data)
                # passed straight on (no local name): marshal's FLAG_REF bits depend on reference counts
                return self._dumps(self._marshallable(data))
            except ValueError:  # unmarshallable object nested somewhere (Pyro4 gives up here)
                return self._dumps(self._deep(data))
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "marshal cannot serialize") from exc

    def dumps_call(self, obj: str, method: str, vargs: Any, kwargs: Any) -> bytes:
        """Marshal ``(obj, method, [vargs...], {kwargs})``, converting each top-level argument."""
        try:
            try:
                plain = _MARSHALABLE_TYPES
                args = list(vargs)
                for value in vargs:
                    if type(value) not in plain:  # convert (rare): the list is rebuilt
                        args = [v if type(v) in plain else self._marshallable(v) for v in vargs]
                        break
                kw = kwargs if not kwargs else {k: self._marshallable(v) for k, v in kwargs.items()}
                return self._dumps((obj, method, args, kw))
            except ValueError:  # unmarshallable object nested in an argument
                conv = self._deep
                args = [conv(v) for v in vargs]
                kw = None if kwargs is None else {k: conv(v) for k, v in kwargs.items()}
                return self._dumps((obj, method, args, kw))
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "marshal cannot serialize call") from exc

    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        """Unmarshal a value, then rebuild Pyro4 class dicts."""
        try:
            if type(data) is bytes and len(data) <= _WALK_FIRST:  # the usual small message, checks inline
                if _SUSPECT.search(data) is None:
                    return self._loads(data)
                if _SEQ_HEADER.search(data) is not None:
                    _check_lengths(data)
                value = self._loads(data)
                return recreate_classes(value) if b"__class__" in data else value
            _check_lengths(data)
            value = self._loads(data)
            if _tagged(value, data):
                value = recreate_classes(value)
            return value
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "invalid marshal data") from exc

    def loads_call(self, data: bytes | bytearray | memoryview) -> CallTuple:
        """Unmarshal a call; only vargs and kwargs are searched for class dicts, like Pyro4."""
        try:
            if type(data) is bytes and len(data) <= _WALK_FIRST and _SUSPECT.search(data) is None:
                return check_call(self._loads(data))  # neither a large claim nor a class dict: as decoded
            if type(data) is not bytes or len(data) > _WALK_FIRST or _SEQ_HEADER.search(data) is not None:
                _check_lengths(data)
            obj, method, vargs, kwargs = check_call(self._loads(data))
            if (b"__class__" in data) if type(data) is bytes else _tagged((vargs, kwargs), data):
                vargs = recreate_classes(vargs)
                kwargs = recreate_classes(kwargs)
            return obj, method, vargs, kwargs
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "invalid marshal call data") from exc


@hookimpl
def pyroplug_serializers() -> tuple[type[Serializer], ...]:
    """The marshal serializer (standard library)."""
    return (MarshalSerializer,)
