"""The pickle serializer (id 4, unsafe): native pickles that name classes as stock Pyro4 does."""

from __future__ import annotations

import importlib.util
import io
import pickle as _pickle
import pickletools
from typing import Any, ClassVar

from pyroplug.core import errors
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.protocol import SplitBody, register_splitter
from pyroplug.core.serializer import (
    CallTuple,
    Serializer,
    check_call,
    class_for_pyro4_global,
    pyro4_global,
    wrap_error,
)

__all__ = ["PickleSerializer", "Pyro4NamesMixin", "Pyro4NamesUnpicklerMixin", "pyroplug_serializers"]

#: values that are pickled as themselves: the replace hook never sees them, no class is named
_ATOMIC = frozenset([int, float, str, bytes, bool, type(None)])
#: pickles mentioning this contain pyroplug classes that must be renamed to their Pyro4 names
_OWN_MODULES = b"pyroplug.core"
#: pickles mentioning this may name Pyro4 classes that map to pyroplug classes
_PYRO4 = b"Pyro4."


class Pyro4NamesMixin:
    """For Python-level picklers: write pyroplug's wire classes under their Pyro4 global names.

    ``pyroplug.core.errors.X`` becomes ``Pyro4.errors.X``, URI ``Pyro4.core.URI``, and so on; the opcodes
    are those pickle itself writes for a global (STACK_GLOBAL from protocol 4, GLOBAL before).
    The optional ``replace`` attribute is the serializer's replace hook (autoproxy).
    """

    replace: Any = None

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:  # noqa: D102 - pickle API
        if type(obj) is type and id(obj) not in self.memo:  # type: ignore[attr-defined]
            names = pyro4_global(obj)
            if names is not None:
                self.framer.commit_frame()  # type: ignore[attr-defined]
                self._save_pyro4_global(obj, *names)
                return
        super().save(obj, save_persistent_id)  # type: ignore[misc]

    def _save_pyro4_global(self, obj: type, module: str, name: str) -> None:
        if self.proto >= 4:  # type: ignore[attr-defined]
            self.save(module)
            self.save(name)
            self.write(_pickle.STACK_GLOBAL)  # type: ignore[attr-defined]
        else:
            self.write(_pickle.GLOBAL + module.encode("ascii") + b"\n" + name.encode("ascii") + b"\n")  # type: ignore[attr-defined]
        self.memoize(obj)  # type: ignore[attr-defined]

    def reducer_override(self, obj: Any) -> Any:  # noqa: D102 - pickle API
        replace = self.replace
        if replace is not None and type(obj) is not type and not hasattr(type(obj), "__pyro_wire_tag__"):
            replaced = replace(obj)
            if replaced is not obj:
                return replaced.__reduce__()
        return NotImplemented


class Pyro4NamesUnpicklerMixin:
    """For unpicklers: ``Pyro4.core.URI``, ``Pyro4.errors.X``, ``Pyro4.futures._ExceptionWrapper`` (and
    Proxy, Daemon) load as the pyroplug classes."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        if module.startswith("Pyro4."):
            cls = class_for_pyro4_global(module, name)
            if cls is not None:
                return cls
        return super().find_class(module, name)  # type: ignore[misc]


def _private_python_pickler() -> type:
    """The pure-Python ``_Pickler`` of a private copy of the pickle module.

    ``import dill`` extends the shared ``pickle._Pickler.dispatch`` with dill's handlers (dill.extend), which
    would change our pickle bytes (classes as ``dill._dill._load_type``); a private copy stays standard.
    """
    spec = importlib.util.find_spec("pickle")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._Pickler  # type: ignore[no-any-return]


class _RenamingPickler(Pyro4NamesMixin, _private_python_pickler()):  # type: ignore[misc]
    """The pure-Python pickler with Pyro4 names: used only when the fast pickle mentions pyroplug classes."""


class _ReplacingPickler(_pickle.Pickler):
    """The C pickler with the replace hook (autoproxy)."""

    def __init__(self, file: Any, protocol: int, replace: Any) -> None:
        super().__init__(file, protocol)
        self._replace = replace

    def reducer_override(self, obj: Any) -> Any:  # noqa: D102 - pickle API
        if type(obj) is not type and not hasattr(type(obj), "__pyro_wire_tag__"):  # see Serializer.convert
            replaced = self._replace(obj)
            if replaced is not obj:
                return replaced.__reduce__()  # as Pyro4's copyreg replacement: copyreg._reconstructor
        return NotImplemented


class _Unpickler(Pyro4NamesUnpicklerMixin, _pickle.Unpickler):
    """The C unpickler with Pyro4 names mapped to pyroplug classes."""


#: a large ``bytes`` value this long or longer is received apart (see ``_locate_bytes``)
_SPLIT_MIN = 1 << 20
_BINBYTES = 0x42
#: NEXT_BUFFER (protocol 5): the unpickler takes its next out-of-band buffer, here the value received apart
_NEXT_BUFFER = b"\x97"
#: what follows a pickled bare ``bytes`` value: MEMOIZE STOP (protocol 4+) or BINPUT 0 STOP (protocol 3)
_BARE_TAILS = (b"\x94.", b"q\x00.")


def _locate_bytes(msgtype: int, prefix: memoryview, size: int) -> tuple[int, int] | None:
    """Where the first large ``bytes`` value of a pickle payload is (see ``register_splitter``).

    The opcodes of the received prefix are parsed (``pickletools.genops``, which runs nothing) up to the
    first one the prefix ends inside of; when that is a BINBYTES of at least 1 MiB outside any frame (as
    pickle writes large values from protocol 4 on, and always in protocol 3), (offset, length) of its
    raw bytes. Anything else: None.
    """
    data = bytes(prefix)
    if len(data) < 7 or data[0] != 0x80 or data[1] < 3:  # protocol 2 pickles bytes through _codecs
        return None
    stream = io.BytesIO(data)
    end = frame_end = 0
    try:
        for opcode, arg, _pos in pickletools.genops(stream):
            end = stream.tell()
            if opcode.name == "FRAME" and type(arg) is int:
                frame_end = end + arg
    except ValueError:  # the prefix ends inside an opcode's argument
        pass
    if end < frame_end or end + 5 > len(data) or data[end] != _BINBYTES:
        return None
    length = int.from_bytes(data[end + 1 : end + 5], "little")
    if length < _SPLIT_MIN or end + 5 + length > size:
        return None
    return end + 5, length


class _ViewReader:
    """A read-only file over a memoryview for the unpickler: large byte strings are read straight into
    their objects (``readinto``), so a large body is neither copied first nor scanned for names."""

    __slots__ = ("_view", "_pos")

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        pos, total = self._pos, len(self._view)
        end = total if size < 0 else min(total, pos + size)
        self._pos = end
        return self._view[pos:end].tobytes()

    def readinto(self, buffer: Any) -> int:
        pos = self._pos
        size = min(len(buffer), len(self._view) - pos)
        buffer[:size] = self._view[pos : pos + size]
        self._pos = pos + size
        return size

    def readline(self, size: int = -1) -> bytes:
        view, pos = self._view, self._pos
        end = len(view) if size < 0 else min(len(view), pos + size)
        stop = pos
        while stop < end and view[stop] != 10:
            stop += 1
        self._pos = min(end, stop + 1)
        return view[pos : self._pos].tobytes()


class PickleSerializer(Serializer):
    """Pyro4's pickle format at ``PICKLE_PROTOCOL_VERSION``. Unsafe: loading runs code.

    pyroplug classes are written under stock Pyro4's names, so the bytes match a Pyro4 peer's for the same
    values and each side unpickles the other's errors, URIs, proxies and exception wrappers.
    The fast C pickler runs first; only when its output mentions ``pyroplug.core`` is the value pickled
    again by the Python pickler, which renames the classes.
    """

    name: ClassVar[str] = "pickle"
    serializer_id: ClassVar[int] = 4
    #: large ``bytes`` are framed as a little-endian 4-byte length and the raw bytes: sent without a copy
    #: (see :mod:`pyroplug.core.gather`)
    bytes_length_field: ClassVar[str] = "little"
    safe: ClassVar[bool] = False
    roundtrip_types = frozenset({
        "none", "bool", "int", "bigint", "float", "nan", "str", "bytes", "bytearray", "tuple", "list", "dict",
        "intkeys", "set", "emptyset", "frozenset", "complex", "datetime", "date", "nested_objects",
    })

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.protocol = int(config.PICKLE_PROTOCOL_VERSION)
        if self.protocol < 2:
            raise errors.PluginError("PICKLE_PROTOCOL_VERSION must be 2 or higher")
        self._fast_dumps = _pickle.dumps
        self._fast_loads = _pickle.loads

    def dumps(self, data: Any) -> bytes:
        """Pickle a value, naming pyroplug classes as Pyro4 does."""
        try:
            if self.replace is None or type(data) in _ATOMIC:  # nothing the replace hook could see
                out = self._fast_dumps(data, self.protocol)
            else:
                buf = io.BytesIO()
                _ReplacingPickler(buf, self.protocol, self.replace).dump(data)
                out = buf.getvalue()
            if _OWN_MODULES in out:
                buf = io.BytesIO()
                pickler = _RenamingPickler(buf, self.protocol)
                pickler.replace = self.replace
                pickler.dump(data)
                out = buf.getvalue()
            return out
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "pickle cannot serialize") from exc

    def dumps_call(self, obj: str, method: str, vargs: Any, kwargs: Any) -> bytes:
        """Pickle the call 4-tuple; with plain arguments only (the usual small call) in one fast step."""
        call = (obj, method, vargs, kwargs)
        if not kwargs and type(vargs) is tuple:
            for value in vargs:
                if type(value) not in _ATOMIC:
                    break
            else:  # ints, strings, ...: no object for the replace hook, no pyroplug class to rename
                try:
                    return self._fast_dumps(call, self.protocol)
                except Exception as exc:
                    raise wrap_error(exc, "pickle cannot serialize") from exc
        return self.dumps(call)

    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        """Unpickle a value; Pyro4 class names load as pyroplug classes."""
        try:
            if type(data) is SplitBody:
                return self._loads_split(data)
            if type(data) is memoryview:  # a large body: read in place, Pyro4 names mapped as they come
                return _Unpickler(_ViewReader(data)).load()
            if _PYRO4 in data:
                return _Unpickler(io.BytesIO(data)).load()
            return self._fast_loads(data)
        except errors.PyroError:
            raise
        except Exception as exc:
            raise wrap_error(exc, "invalid pickle data") from exc

    def loads_call(self, data: bytes | bytearray | memoryview) -> CallTuple:
        """Unpickle a call 4-tuple."""
        return check_call(self.loads(data))

    @staticmethod
    def _loads_split(body: SplitBody) -> Any:
        """Unpickle a payload whose large bytes value was received apart (see ``_locate_bytes``): the
        value comes back as the very bytes object received. A bare value is that object; otherwise its
        BINBYTES opcode becomes a NEXT_BUFFER and the object the out-of-band buffer."""
        head, value, tail = body.head, body.value, body.tail
        if len(head) == 7 and tail in _BARE_TAILS:  # PROTO n, BINBYTES length: a result of just the bytes
            return value
        if len(head) < 7 or head[-5] != _BINBYTES:
            raise errors.SerializeError("invalid pickle data: large value out of place")
        return _Unpickler(io.BytesIO(head[:-5] + _NEXT_BUFFER + tail), buffers=[value]).load()


@hookimpl
def pyroplug_serializers() -> tuple[type[Serializer], ...]:
    """The pickle serializer (standard library; never accepted unless listed in SERIALIZERS_ACCEPTED)."""
    register_splitter(PickleSerializer.serializer_id, _locate_bytes)
    return (PickleSerializer,)
