"""The marshal serializer (id 3): CPython's marshal format, version 4."""

from __future__ import annotations

import array
import marshal as _marshal
import uuid
from typing import Any, ClassVar

from pyroplug.core import errors
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.serializer import CallTuple, Serializer, check_call, recreate_classes, wrap_error

__all__ = ["MarshalSerializer", "pyroplug_serializers"]

_MARSHALABLE = (str, int, float, type(None), bool, complex, bytes, bytearray, tuple, set, frozenset, list, dict)


class MarshalSerializer(Serializer):
    """Pyro4's marshal format. Like Pyro4, only the top-level value (and each top-level call argument)
    is converted to a class dict; objects nested deeper cannot be sent. Calls carry vargs as a list.

    Unlike stock Pyro4 4.82 (PYRO4-PROTOCOL 2.17) a call with kwargs None (``__getattr__``,
    ``__setattr__``, ``<batch>``) is sent as is instead of crashing.
    """

    name: ClassVar[str] = "marshal"
    serializer_id: ClassVar[int] = 3
    roundtrip_types = frozenset({
        "none", "bool", "int", "bigint", "float", "nan", "str", "bytes", "tuple", "list", "dict", "intkeys",
        "set", "emptyset", "frozenset", "complex",
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

    def dumps(self, data: Any) -> bytes:
        """Marshal a value, converting it first when it is not marshallable itself."""
        try:
            if type(data) not in _MARSHALABLE:
                data = self._marshallable(data)
            return self._dumps(data)
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "marshal cannot serialize") from exc

    def dumps_call(self, obj: str, method: str, vargs: Any, kwargs: Any) -> bytes:
        """Marshal ``(obj, method, [vargs...], {kwargs})``, converting each top-level argument."""
        try:
            conv = self._marshallable
            args = [conv(v) for v in vargs]
            if kwargs is not None:
                kwargs = {k: conv(v) for k, v in kwargs.items()}
            return self._dumps((obj, method, args, kwargs))
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "marshal cannot serialize call") from exc

    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        """Unmarshal a value, then rebuild Pyro4 class dicts."""
        try:
            value = self._loads(data)
            if b"__class__" in _raw(data):
                value = recreate_classes(value)
            return value
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "invalid marshal data") from exc

    def loads_call(self, data: bytes | bytearray | memoryview) -> CallTuple:
        """Unmarshal a call; only vargs and kwargs are searched for class dicts, like Pyro4."""
        try:
            obj, method, vargs, kwargs = check_call(self._loads(data))
            if b"__class__" in _raw(data):
                vargs = recreate_classes(vargs)
                kwargs = recreate_classes(kwargs)
            return obj, method, vargs, kwargs
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "invalid marshal call data") from exc


def _raw(data: bytes | bytearray | memoryview) -> bytes | bytearray:
    return data.tobytes() if type(data) is memoryview else data


@hookimpl
def pyroplug_serializers() -> tuple[type[Serializer], ...]:
    """The marshal serializer (standard library)."""
    return (MarshalSerializer,)
