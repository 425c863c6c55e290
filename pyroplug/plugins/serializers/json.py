"""The json serializer (id 2): UTF-8 JSON, calls as ``{"object", "method", "params", "kwargs"}``."""

from __future__ import annotations

import array
import datetime
import decimal
import importlib
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from pyroplug.core import errors
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.serializer import CallTuple, Serializer, check_call, recreate_classes, wrap_error

__all__ = ["JsonSerializer", "pyroplug_serializers"]


def _direct_decode(decoder: Any, decode: Callable[[str], Any]) -> Callable[[str], Any]:
    """``decode`` without its Python layers for the usual text (a value with no surrounding whitespace):
    the C scanner directly; anything else (whitespace, extra data, errors) goes through ``decode``."""
    scan = decoder.scan_once

    def direct(text: str) -> Any:
        try:
            value, end = scan(text, 0)
        except StopIteration:
            return decode(text)  # raises the precise JSONDecodeError
        if end != len(text):
            return decode(text)
        return value

    return direct


class JsonSerializer(Serializer):
    """Pyro4's json format: ``dumps(..., ensure_ascii=False, default=...)`` encoded as UTF-8.

    The module is ``JSON_MODULE`` (default ``json``). Sets become arrays; UUID, datetime, date and Decimal
    become strings; other objects become Pyro4 class dicts. NaN and Infinity are allowed, bytes are not.
    """

    name: ClassVar[str] = "json"
    serializer_id: ClassVar[int] = 2
    roundtrip_types = frozenset({"none", "bool", "int", "bigint", "float", "nan", "str", "list", "dict", "nested_objects"})

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        try:
            module = importlib.import_module(config.JSON_MODULE)
        except ImportError as exc:
            raise errors.PluginError(f"JSON_MODULE {config.JSON_MODULE!r} cannot be imported: {exc}") from exc
        encoder = getattr(module, "JSONEncoder", None)
        if module.__name__ == "json" and encoder is not None:
            # exactly what json.dumps(data, ensure_ascii=False, default=...) builds on every call, built once
            self._encode = encoder(ensure_ascii=False, default=self._default).encode
            self._decode = module.JSONDecoder().decode
            make = getattr(module.encoder, "c_make_encoder", None)
            if make is not None:  # the C encoder and scanner that encode() and decode() end up in, called directly
                chunks = make(None, self._default, module.encoder.encode_basestring, None, ": ", ", ", False, False, True)
                self._encode = lambda data: "".join(chunks(data, 0))  # a cycle raises RecursionError: wrapped below
                self._decode = _direct_decode(module.JSONDecoder(), self._decode)
        else:
            dumps, default = module.dumps, self._default
            self._encode = lambda data: dumps(data, ensure_ascii=False, default=default)
            self._decode = module.loads

    def _default(self, obj: Any) -> Any:
        """Pyro4's conversions for what JSON cannot carry, then the replace hook and class dicts."""
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        if isinstance(obj, uuid.UUID):
            return str(obj)
        if isinstance(obj, (datetime.datetime, datetime.date)):
            return obj.isoformat()
        if isinstance(obj, decimal.Decimal):
            return str(obj)
        if isinstance(obj, array.array):
            return obj.tounicode() if obj.typecode == "u" else obj.tolist()
        return self.convert(obj)

    def dumps(self, data: Any) -> bytes:
        """Serialize a value as UTF-8 JSON."""
        try:
            return self._encode(data).encode("utf-8")
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "json cannot serialize") from exc

    def dumps_call(self, obj: str, method: str, vargs: Any, kwargs: Any) -> bytes:
        """Serialize a call as Pyro4's JSON object ``{"object", "method", "params", "kwargs"}``."""
        return self.dumps({"object": obj, "method": method, "params": vargs, "kwargs": kwargs})

    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        """Parse UTF-8 JSON, then rebuild Pyro4 class dicts."""
        try:
            text = str(data, "utf-8")
            value = self._decode(text)
            if "__class__" in text:
                value = recreate_classes(value)
            return value
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "invalid json data") from exc

    def loads_call(self, data: bytes | bytearray | memoryview) -> CallTuple:
        """Parse a call object; only params and kwargs are searched for class dicts, like Pyro4."""
        try:
            text = str(data, "utf-8")
            call = self._decode(text)
            if type(call) is not dict:
                raise errors.SerializeError("invalid json call message: not an object")
            try:
                obj, method, vargs, kwargs = call["object"], call["method"], call["params"], call["kwargs"]
            except KeyError as exc:
                raise errors.SerializeError(f"invalid json call message: missing {exc}") from None
            obj, method, vargs, kwargs = check_call((obj, method, vargs, kwargs))
            if "__class__" in text:
                vargs = recreate_classes(vargs)
                kwargs = recreate_classes(kwargs)
            return obj, method, vargs, kwargs
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "invalid json call data") from exc


@hookimpl
def pyroplug_serializers() -> tuple[type[Serializer], ...]:
    """The json serializer (standard library)."""
    return (JsonSerializer,)
