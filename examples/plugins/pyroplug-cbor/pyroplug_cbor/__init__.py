"""pyroplug-cbor: a CBOR serializer plugin for pyroplug (wire id 40), built on cbor2."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import cbor2

from pyroplug.core import errors
from pyroplug.core.serializer import CallTuple
from pyroplug.plugin import Serializer, check_call, dict_to_class, hookimpl, wrap_error

__all__ = ["CborSerializer", "pyroplug_serializers"]
__version__ = "0.1.0"


#: deepest container nesting we encode: cbor2 6.3's C encoder has no recursion guard and crashes the
#: interpreter (SIGSEGV) somewhere past 5000 levels; its decoder stops at 400 (max_depth)
MAX_DEPTH = 1000
_CONTAINERS = (list, tuple, dict, set, frozenset)


def _check_depth(value: Any) -> None:
    """Raise SerializeError when containers nest deeper than MAX_DEPTH (iteratively, cycles included)."""
    if type(value) not in _CONTAINERS:
        return
    deepest: dict[int, int] = {}
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise errors.SerializeError(f"cbor: data nested deeper than {MAX_DEPTH} levels (or cyclic)")
        if deepest.get(id(item), -1) >= depth:
            continue
        deepest[id(item)] = depth
        children = (*item.keys(), *item.values()) if type(item) is dict else item
        stack.extend((child, depth + 1) for child in children if type(child) in _CONTAINERS)


def _pyro_cause(exc: BaseException) -> errors.PyroError | None:
    """The pyroplug error (SerializeError, SecurityError) that cbor2 wrapped in its own, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, errors.PyroError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _object_hook(mapping: Mapping[Any, Any], immutable: bool) -> Any:
    """Rebuild Pyro4 class dicts (URIs, exceptions, proxies) while decoding."""
    if "__class__" in mapping:
        return dict_to_class(dict(mapping))
    return mapping


class CborSerializer(Serializer):
    """CBOR with cbor2's native types (big ints, complex, sets, dates, Decimal, UUID ...).

    Objects CBOR cannot carry travel as pyroplug/Pyro4 class dicts, so URIs, proxies and exceptions work
    as with json or msgpack. Naive datetimes are refused (CBOR timestamps need a timezone). Values are
    checked for nesting depth before encoding (:data:`MAX_DEPTH`), to keep cbor2 from crashing.
    """

    name: ClassVar[str] = "cbor"
    serializer_id: ClassVar[int] = 40
    roundtrip_types = frozenset({
        "none", "bool", "int", "bigint", "float", "nan", "str", "bytes", "list", "dict", "intkeys", "set",
        "emptyset", "complex", "date", "nested_objects",
    })

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._dumps = cbor2.dumps
        self._loads = cbor2.loads

    def _default(self, encoder: Any, value: Any) -> None:
        converted = self.convert(value)
        _check_depth(converted)
        encoder.encode(converted)

    def dumps(self, data: Any) -> bytes:
        """Encode a value as CBOR."""
        try:
            _check_depth(data)
            return self._dumps(data, default=self._default)
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "cbor cannot serialize") from exc

    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        """Decode CBOR, rebuilding class dicts when the payload has any."""
        try:
            raw = data.tobytes() if type(data) is memoryview else bytes(data)
            if b"__class__" in raw:
                return self._loads(raw, object_hook=_object_hook)
            return self._loads(raw)
        except errors.PyroError:
            raise
        except Exception as exc:
            cause = _pyro_cause(exc)  # cbor2 wraps errors raised by the object hook ("error decoding map")
            if cause is not None:
                raise cause from exc
            raise wrap_error(exc, "invalid cbor data") from exc

    def loads_call(self, data: bytes | bytearray | memoryview) -> CallTuple:
        """Decode a call array ``[obj, method, vargs, kwargs]``."""
        return check_call(self.loads(data))


@hookimpl
def pyroplug_serializers() -> tuple[type[Serializer], ...]:
    """The CBOR serializer."""
    return (CborSerializer,)
