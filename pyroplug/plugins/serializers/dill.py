"""The dill serializer (id 5, unsafe, optional): dill pickles with stock Pyro4's class names."""

from __future__ import annotations

import io
from typing import Any, ClassVar

from pyroplug.core import errors
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.serializer import CallTuple, Serializer, check_call, wrap_error
from pyroplug.plugins.serializers.pickle import Pyro4NamesMixin, Pyro4NamesUnpicklerMixin

try:
    import dill as _dill
except ImportError:  # pragma: no cover - exercised only without the 'dill' extra
    _dill = None

__all__ = ["DillSerializer", "pyroplug_serializers"]


class DillSerializer(Serializer):
    """Pyro4's dill format at ``DILL_PROTOCOL_VERSION``. Unsafe: loading runs code.

    Like the pickle serializer, pyroplug classes are written as ``Pyro4.errors.X``, ``Pyro4.core.URI`` ...
    and those names load back as pyroplug classes. Needs ``pip install pyroplug[dill]``.
    """

    name: ClassVar[str] = "dill"
    serializer_id: ClassVar[int] = 5
    safe: ClassVar[bool] = False
    roundtrip_types = frozenset({
        "none", "bool", "int", "bigint", "float", "nan", "str", "bytes", "bytearray", "tuple", "list", "dict",
        "intkeys", "set", "emptyset", "frozenset", "complex", "datetime", "date", "nested_objects",
    })

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        if _dill is None:
            raise errors.PluginError("the dill serializer needs dill: pip install pyroplug[dill]")
        self.protocol = int(config.DILL_PROTOCOL_VERSION)
        self._pickler, self._unpickler = _classes()

    def dumps(self, data: Any) -> bytes:
        """Dill-pickle a value, naming pyroplug classes as Pyro4 does."""
        try:
            buf = io.BytesIO()
            pickler = self._pickler(buf, self.protocol)
            pickler.replace = self.replace
            pickler.dump(data)
            return buf.getvalue()
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "dill cannot serialize") from exc

    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        """Unpickle a dill value; Pyro4 class names load as pyroplug classes."""
        try:
            return self._unpickler(io.BytesIO(data)).load()
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "invalid dill data") from exc

    def loads_call(self, data: bytes | bytearray | memoryview) -> CallTuple:
        """Unpickle a call 4-tuple."""
        return check_call(self.loads(data))


_CLASSES: tuple[type, type] | None = None


def _classes() -> tuple[type, type]:
    """dill's Pickler/Unpickler with the Pyro4 naming mixins (built once, when dill is present)."""
    global _CLASSES
    if _CLASSES is None:

        class Pickler(Pyro4NamesMixin, _dill.Pickler):  # type: ignore[name-defined,misc]
            """dill's pickler writing Pyro4 names."""

        class Unpickler(Pyro4NamesUnpicklerMixin, _dill.Unpickler):  # type: ignore[name-defined,misc]
            """dill's unpickler reading Pyro4 names."""

        _CLASSES = (Pickler, Unpickler)
    return _CLASSES


@hookimpl
def pyroplug_serializers() -> tuple[type[Serializer], ...]:
    """The dill serializer, or nothing when dill is not installed."""
    return (DillSerializer,) if _dill is not None else ()
