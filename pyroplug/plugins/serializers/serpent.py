"""The serpent serializer (id 1): Python literal text, Pyro4's default format."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import serpent as _serpent

from pyroplug.core import errors
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.serializer import (
    CallTuple,
    Serializer,
    add_class_listener,
    check_call,
    class_walker,
    dict_to_class,
    qualified_name,
    wrap_error,
)
from pyroplug.plugins.serializers import serpent_text

__all__ = ["SerpentSerializer", "pyroplug_serializers"]


class _Writer(_serpent.Serializer):
    """serpent's serializer with Pyro4's class names for exceptions and a pyroplug fallback for objects."""

    dispatch = dict(_serpent.Serializer.dispatch)

    def __init__(self, owner: SerpentSerializer, bytes_repr: bool) -> None:
        super().__init__(indent=False, module_in_classname=True, bytes_repr=bytes_repr)
        self.owner = owner

    def ser_exception_class(self, exc_obj: BaseException, out: list, level: int) -> None:
        value = {
            "__class__": qualified_name(type(exc_obj)),
            "__exception__": True,
            "args": exc_obj.args,
            "attributes": vars(exc_obj),
        }
        self._serialize(value, out, level)

    dispatch[BaseException] = ser_exception_class

    def ser_object(self, obj: Any, out: list, level: int) -> None:
        """Every type serpent has no handler for: the replace hook, else a Pyro4 class dict."""
        if id(obj) in self.serialized_obj_ids:
            raise ValueError("Circular reference detected (class)")
        self.serialized_obj_ids.add(id(obj))
        try:
            self._serialize(self.owner.convert(obj), out, level)
        finally:
            self.serialized_obj_ids.discard(id(obj))

    # object is the last entry of every MRO: serpent's MRO walk lands here for unknown classes
    dispatch[object] = ser_object


def _special_dict_to_class(data: dict) -> Any:
    """serpent's own tags for values without a literal (NaN floats and complex numbers), then Pyro4's."""
    tag = data.get("__class__")
    if tag == "float":
        return float(data["value"])
    if tag == "complex":
        return complex(_float_part(data["real"]), _float_part(data["imag"]))
    return dict_to_class(data)


def _float_part(value: Any) -> float:
    if type(value) is dict:
        value = _special_dict_to_class(value)
    if type(value) not in (int, float):
        raise errors.SerializeError("invalid serpent complex number")
    return float(value)


_recreate = class_walker(_special_dict_to_class)


def _serpent_listener(clazz: type, converter: Any) -> None:
    """Mirror ``register_class_to_dict(..., serpent_too=True)`` into serpent's class registry."""
    if converter is None:
        _serpent.unregister_class(clazz)
        return

    def write(obj: Any, writer: Any, out: list, level: int) -> None:
        writer.ser_builtins_dict(converter(obj), out, level)

    _serpent.register_class(clazz, write)


add_class_listener(_serpent_listener)


_UNPARSED = serpent_text.UNPARSED


def _text(data: bytes | bytearray | memoryview) -> bytes | bytearray:
    return data.tobytes() if type(data) is memoryview else data


class SerpentSerializer(Serializer):
    """Pyro4's serpent format: ``serpent.dumps(..., module_in_classname=True)`` and ``ast.literal_eval``.

    NaN travels as ``{'__class__':'float','value':'nan'}`` and comes back as a float. With
    ``SERPENT_BYTES_REPR`` bytes travel as bytes literals (and come back as bytes); otherwise they travel
    as Pyro4's ``{'data': <base64>, 'encoding': 'base64'}`` dict, which stays a dict on receipt.
    """

    name: ClassVar[str] = "serpent"
    serializer_id: ClassVar[int] = 1
    roundtrip_types = frozenset({
        "none", "bool", "int", "bigint", "float", "nan", "str", "tuple", "list", "dict", "intkeys", "set",
        "complex", "nested_objects",
    })

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._bytes_repr = bool(config.SERPENT_BYTES_REPR)
        if self._bytes_repr:
            self.roundtrip_types = self.roundtrip_types | {"bytes"}
        self._raw_loads = _serpent.loads
        # serialize() resets a writer's state: this one is reused by whoever gets its lock
        self._writer = _Writer(self, self._bytes_repr)
        self._writer_lock = threading.Lock()
        # the fast path never nests deeper than serpent's writer would accept
        self._depth_limit = min(serpent_text.MAX_DEPTH, self._writer.maximum_level)

    def dumps(self, data: Any) -> bytes:
        """Serialize a value as serpent text: plain literals on the fast path (the same bytes), the rest
        with serpent (a reused writer unless another thread or a nested call is using it)."""
        fast = serpent_text.encode(data, self._depth_limit)
        if fast is not None:
            return fast
        try:
            lock = self._writer_lock
            if lock.acquire(False):
                try:
                    return self._writer.serialize(data)  # type: ignore[no-any-return]
                finally:
                    lock.release()
            return _Writer(self, self._bytes_repr).serialize(data)
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "serpent cannot serialize") from exc

    def dumps_call(self, obj: str, method: str, vargs: Any, kwargs: Any) -> bytes:
        """Serialize the call 4-tuple, on the fast path when it holds plain literals only."""
        fast = serpent_text.encode_call(obj, method, vargs, kwargs, self._depth_limit)
        if fast is not None:
            return fast
        return self.dumps((obj, method, vargs, kwargs))

    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        """Parse serpent text (plain literals on the fast path, the rest with serpent), then rebuild
        Pyro4 class dicts."""
        data = _text(data)
        try:
            value = serpent_text.decode(data)
            if value is _UNPARSED:
                value = self._raw_loads(data)
            if b"__class__" in data:
                value = _recreate(value)
            return value
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "invalid serpent data") from exc

    def loads_call(self, data: bytes | bytearray | memoryview) -> CallTuple:
        """Parse a call 4-tuple; only vargs and kwargs are searched for class dicts, like Pyro4."""
        data = _text(data)
        try:
            call = serpent_text.decode_call(data)
            if call is _UNPARSED:
                call = self._raw_loads(data)
            obj, method, vargs, kwargs = check_call(call)
            if b"__class__" in data:
                vargs = _recreate(vargs)
                kwargs = _recreate(kwargs)
            return obj, method, vargs, kwargs
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "invalid serpent call data") from exc


@hookimpl
def pyroplug_serializers() -> tuple[type[Serializer], ...]:
    """The serpent serializer (serpent is a required dependency)."""
    return (SerpentSerializer,)
