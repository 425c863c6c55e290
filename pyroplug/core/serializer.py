"""The Serializer plugin contract, the Pyro4 class<->dict conversion registries and call-tuple helpers.

Serializer plugins subclass :class:`Serializer`. Formats that cannot carry arbitrary objects (serpent,
json, marshal, msgpack) turn them into dicts tagged ``"__class__"`` with :func:`class_to_dict` and back
with :func:`dict_to_class`; these produce and accept exactly Pyro4 4.82's tags (``Pyro4.core.URI``,
``Pyro4.core.Proxy``, ``Pyro4.errors.X``, ``Pyro4.futures._ExceptionWrapper`` ...). Formats that pickle
classes by name (pickle, dill) use :func:`pyro4_global` / :func:`class_for_pyro4_global` to write and read
the same Pyro4 names.
"""

from __future__ import annotations

import builtins
import importlib
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from pyroplug.core import errors

if TYPE_CHECKING:
    from pyroplug.core.config import Config

__all__ = [
    "ROUNDTRIP_TOKENS",
    "WIRE_CLASSES",
    "CallTuple",
    "Serializer",
    "add_class_listener",
    "check_call",
    "class_for_pyro4_global",
    "class_to_dict",
    "class_walker",
    "dict_to_class",
    "make_exception",
    "pyro4_global",
    "qualified_name",
    "recreate_classes",
    "register_class_to_dict",
    "register_dict_to_class",
    "remove_class_listener",
    "unregister_class_to_dict",
    "unregister_dict_to_class",
    "wire_class",
    "wrap_error",
]

#: a call as it travels: (object id, method name, positional args, keyword args or None)
CallTuple = tuple[str, str, Any, Any]

#: the words a serializer may list in :attr:`Serializer.roundtrip_types` (read by the conformance suite)
ROUNDTRIP_TOKENS = frozenset({
    "none", "bool", "int", "bigint", "float", "nan", "str", "bytes", "bytearray", "tuple", "list",
    "dict", "intkeys", "set", "emptyset", "frozenset", "complex", "datetime", "date", "nested_objects",
})

_registry_lock = threading.Lock()
# The registries are copied on write, so readers iterate a dict nobody mutates.
#: user converters: class -> function(obj) returning a dict (Pyro4's register_class_to_dict)
_class_to_dict: dict[type, Callable[[Any], dict]] = {}
#: the classes registered with ``serpent_too=True``: told to serializers that keep their own table
_listened_classes: set[type] = set()
#: user converters: class name -> function(classname, dict) returning an object
_dict_to_class: dict[str, Callable[[str, dict], Any]] = {}
#: kernel classes with a fixed wire tag (URI, Proxy, Daemon, _ExceptionWrapper): tag -> class
WIRE_CLASSES: dict[str, type] = {}
#: where a kernel wire class is defined, imported on first need
_WIRE_MODULES = {
    "Pyro4.core.URI": "pyroplug.core.uri",
    "Pyro4.core.Proxy": "pyroplug.core.proxy",
    "Pyro4.core.Daemon": "pyroplug.core.daemon",
    "Pyro4.futures._ExceptionWrapper": "pyroplug.core.futures",
    # Flame's remote objects travel (pickled) under Pyro4's names too
    "Pyro4.utils.flame.FlameModule": "pyroplug.tools.flame",
    "Pyro4.utils.flame.FlameBuiltin": "pyroplug.tools.flame",
    "Pyro4.utils.flame.RemoteInteractiveConsole": "pyroplug.tools.flame",
}
#: listeners told when the class_to_dict registry changes (serpent keeps its own class table)
_class_listeners: list[Callable[[type, Callable[[Any], dict] | None], None]] = []


def wire_class(tag: str) -> Callable[[type], type]:
    """Class decorator for kernel classes that travel under a fixed Pyro4 tag.

    The class provides ``_wire_state(self)`` (a list/tuple) and classmethod ``_from_wire_state(state)``.
    """

    def deco(cls: type) -> type:
        cls.__pyro_wire_tag__ = tag  # type: ignore[attr-defined]
        WIRE_CLASSES[tag] = cls
        return cls

    return deco


def register_class_to_dict(clazz: type, converter: Callable[[Any], dict], serpent_too: bool = True) -> None:
    """Serialize instances of ``clazz`` (and subclasses) as the dict ``converter(obj)`` returns.

    With ``serpent_too`` the serpent serializer uses it even for types serpent would encode itself.
    """
    global _class_to_dict
    with _registry_lock:
        _class_to_dict = {**_class_to_dict, clazz: converter}
        if serpent_too:
            _listened_classes.add(clazz)
        else:
            _listened_classes.discard(clazz)
        listeners = list(_class_listeners)
    if serpent_too:
        for listener in listeners:
            listener(clazz, converter)


def unregister_class_to_dict(clazz: type) -> None:
    """Undo :func:`register_class_to_dict` for ``clazz``."""
    global _class_to_dict
    with _registry_lock:
        _class_to_dict = {k: v for k, v in _class_to_dict.items() if k is not clazz}
        _listened_classes.discard(clazz)
        listeners = list(_class_listeners)
    for listener in listeners:
        listener(clazz, None)


def register_dict_to_class(classname: str, converter: Callable[[str, dict], Any]) -> None:
    """Rebuild dicts tagged ``classname`` with ``converter(classname, dict)`` (not used by pickle)."""
    global _dict_to_class
    with _registry_lock:
        _dict_to_class = {**_dict_to_class, classname: converter}


def unregister_dict_to_class(classname: str) -> None:
    """Undo :func:`register_dict_to_class` for ``classname``."""
    global _dict_to_class
    with _registry_lock:
        _dict_to_class = {k: v for k, v in _dict_to_class.items() if k != classname}


def add_class_listener(listener: Callable[[type, Callable[[Any], dict] | None], None]) -> None:
    """Be told of every ``serpent_too`` class_to_dict (un)registration, starting with the current ones.

    Serializers that keep their own class table (serpent) use it. ``listener(clazz, None)`` means removed.
    """
    with _registry_lock:
        _class_listeners.append(listener)
        current = [(c, _class_to_dict[c]) for c in _listened_classes if c in _class_to_dict]
    for clazz, conv in current:
        listener(clazz, conv)


def remove_class_listener(listener: Callable[[type, Callable[[Any], dict] | None], None]) -> None:
    """Stop telling ``listener`` about registrations (see :func:`add_class_listener`)."""
    with _registry_lock:
        if listener in _class_listeners:
            _class_listeners.remove(listener)


def qualified_name(cls: type) -> str:
    """``module.Name`` as Pyro4 writes it; pyroplug's own errors travel as ``Pyro4.errors.Name``."""
    module = cls.__module__
    if module == "pyroplug.core.errors":
        module = "Pyro4.errors"
    return f"{module}.{cls.__name__}"


_OBJECT_GETSTATE = getattr(object, "__getstate__", None)  # Python 3.11+ default: not a custom state


def class_to_dict(obj: Any) -> dict:
    """Convert an object the format cannot carry natively into a Pyro4 class dict.

    Order: user converters, kernel wire classes, exceptions, ``__getstate__`` dicts, ``vars()``,
    ``__slots__``. Raises SerializeError when nothing applies. Unlike stock Pyro4 on Python >= 3.11
    (PYRO4-PROTOCOL 2.17) plain objects keep their ``__class__`` tag, and ``_pyroDaemon`` is sent as None
    without touching the object.
    """
    for clazz, conv in _class_to_dict.items():
        if isinstance(obj, clazz):
            return conv(obj)
    tag = getattr(type(obj), "__pyro_wire_tag__", None)
    if tag is not None:
        if tag == "Pyro4.futures._ExceptionWrapper":
            return {"__class__": tag, "exception": class_to_dict(obj.exception)}
        module, _, name = tag.rpartition(".")
        # a fresh string as Pyro4 builds it ("Pyro4.core." + name): marshal flags shared strings differently
        return {"__class__": module + "." + name, "state": obj._wire_state()}
    if type(obj) in (set, dict, tuple, list):
        raise ValueError(f"can't serialize type {obj.__class__} into a dict")
    if isinstance(obj, BaseException):
        return {
            "__class__": qualified_name(type(obj)),
            "__exception__": True,
            "args": obj.args,
            "attributes": vars(obj),  # not a copy: marshal's reference flags then match Pyro4's bytes
        }
    getstate = getattr(type(obj), "__getstate__", None)
    if getstate is not None and getstate is not _OBJECT_GETSTATE:
        value = obj.__getstate__()
        if isinstance(value, dict):
            return value
    try:
        value = dict(vars(obj))
    except TypeError:
        slots = getattr(type(obj), "__slots__", None)
        if slots is None:
            raise errors.SerializeError(
                f"don't know how to serialize class {obj.__class__}. Give it vars() or an appropriate __getstate__"
            ) from None
        value = {slot: getattr(obj, slot) for slot in ([slots] if isinstance(slots, str) else slots)}
    if "_pyroDaemon" in value:
        value["_pyroDaemon"] = None  # Pyro4 clears it (on the object itself); the bytes are the same
    value["__class__"] = f"{obj.__class__.__module__}.{obj.__class__.__name__}"
    return value


def make_exception(exctype: type[BaseException], data: dict) -> BaseException:
    """Build an exception of ``exctype`` from a class dict: ``args`` plus the ``attributes`` set on it.

    Attribute names with double underscores (other than ``__notes__``) raise SecurityError.
    """
    args = data.get("args") or ()
    if not isinstance(args, (list, tuple)):
        raise errors.SerializeError(f"invalid exception args for {exctype.__name__}")
    ex = exctype(*args)
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise errors.SerializeError(f"invalid exception attributes for {exctype.__name__}")
    for attr, value in attributes.items():
        if type(attr) is not str:
            raise errors.SerializeError(f"invalid exception attribute name {attr!r}")
        if attr.startswith("__") and attr != "__notes__":
            raise errors.SecurityError("refused to set exception attribute with double underscores: " + attr)
        setattr(ex, attr, value)
    return ex


def _builtin_exception(name: str) -> type[BaseException] | None:
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return cls
    return None


def _wire_class_for(tag: str) -> type | None:
    cls = WIRE_CLASSES.get(tag)
    if cls is None and tag in _WIRE_MODULES:
        importlib.import_module(_WIRE_MODULES[tag])
        cls = WIRE_CLASSES.get(tag)
    return cls


def dict_to_class(data: dict) -> Any:
    """Rebuild an object from a Pyro4 class dict; only known tags are accepted.

    Raises SecurityError for names containing ``__`` and SerializeError for unknown names.
    """
    classname = data.get("__class__", "<unknown>")
    if isinstance(classname, bytes):
        classname = classname.decode("utf-8", "replace")
    if not isinstance(classname, str):
        raise errors.SerializeError(f"invalid class tag: {classname!r}")
    conv = _dict_to_class.get(classname)
    if conv is not None:
        return conv(classname, data)
    if "__" in classname:
        raise errors.SecurityError("refused to deserialize types with double underscores in their name: " + classname)
    if classname in _WIRE_MODULES:
        cls = _wire_class_for(classname)
        if cls is not None:
            if classname == "Pyro4.futures._ExceptionWrapper":
                exc = data.get("exception")
                if isinstance(exc, dict) and "__class__" in exc:
                    exc = dict_to_class(exc)
                return cls(exc)
            return cls._from_wire_state(data.get("state", ()))  # type: ignore[attr-defined]
    namespace, _, short = classname.partition(".")
    if namespace in ("Pyro4", "pyroplug") and short.startswith("errors."):
        errcls = errors.ERRORS_BY_NAME.get(short[len("errors."):])
        if errcls is not None:
            return make_exception(errcls, data)
    elif data.get("__exception__", False):
        exctype: type[BaseException] | None = None
        if namespace in ("builtins", "exceptions"):
            exctype = _builtin_exception(short)
        elif namespace == "sqlite3" and short.endswith("Error"):
            import sqlite3

            candidate = getattr(sqlite3, short, None)
            if isinstance(candidate, type) and issubclass(candidate, BaseException):
                exctype = candidate
        if exctype is not None:
            return make_exception(exctype, data)
    raise errors.SerializeError("unsupported serialized class: " + classname)


def class_walker(convert: Callable[[dict], Any]) -> Callable[[Any], Any]:
    """Make a function that walks a decoded structure top-down, replacing tagged dicts by ``convert(d)``.

    Like Pyro4, the dict handed to ``convert`` is not walked first (its converter sees the raw values).
    """

    def walk(value: Any) -> Any:
        t = type(value)
        if t is dict:
            if "__class__" in value:
                return convert(value)
            return {k: walk(v) for k, v in value.items()}
        if t is list:
            return [walk(v) for v in value]
        if t is tuple:
            return tuple([walk(v) for v in value])
        if t is set:
            return {walk(v) for v in value}
        return value

    walk.__doc__ = "Rebuild every ``'__class__'``-tagged dict in a decoded structure."
    return walk


#: walk a decoded structure and rebuild every ``"__class__"``-tagged dict with :func:`dict_to_class`
recreate_classes = class_walker(dict_to_class)


_SEQUENCES = (tuple, list)


def check_call(call: Any) -> CallTuple:
    """Validate a decoded call: ``(str, str, list|tuple, dict|None)``; SerializeError otherwise.

    Returns it as a tuple (the decoded tuple itself when it is one)."""
    if type(call) in _SEQUENCES and len(call) == 4:
        obj, method, vargs, kwargs = call
        if (type(obj) is str and type(method) is str and type(vargs) in _SEQUENCES
                and (kwargs is None or type(kwargs) is dict)):
            return call if type(call) is tuple else (obj, method, vargs, kwargs)  # type: ignore[no-any-return]
    _refuse_call(call)


def _refuse_call(call: Any) -> NoReturn:
    """Raise the SerializeError that names what is wrong with ``call``."""
    if type(call) not in _SEQUENCES or len(call) != 4:
        raise errors.SerializeError("invalid call message: not a 4-tuple (object, method, vargs, kwargs)")
    obj, method, vargs, kwargs = call
    if type(obj) is not str or type(method) is not str:
        raise errors.SerializeError("invalid call message: object id and method name must be strings")
    raise errors.SerializeError("invalid call message: vargs must be a sequence and kwargs a dict or None")


def wrap_error(exc: BaseException, what: str) -> errors.SerializeError:
    """A SerializeError saying ``what`` went wrong because of ``exc`` (raise it ``from exc``)."""
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > 200:
        text = text[:200] + "..."
    return errors.SerializeError(f"{what}: {text}")


# ---- Pyro4 global names for the pickle family -----------------------------------------------------
_pyro4_names: dict[type, tuple[str, str]] = {}
_pyro4_names_size = -1


def _pyro4_name_table() -> dict[type, tuple[str, str]]:
    global _pyro4_names, _pyro4_names_size
    if _pyro4_names_size != len(WIRE_CLASSES):  # a wire class module was imported since: rebuild
        size = len(WIRE_CLASSES)
        table = {cls: ("Pyro4.errors", name) for name, cls in errors.ERRORS_BY_NAME.items()}
        for tag, cls in list(WIRE_CLASSES.items()):
            module, _, name = tag.rpartition(".")
            table[cls] = (module, name)
        _pyro4_names, _pyro4_names_size = table, size
    return _pyro4_names


def pyro4_global(cls: Any) -> tuple[str, str] | None:
    """``(module, name)`` under which a pickle-family serializer writes this pyroplug class, else None.

    pyroplug errors become ``Pyro4.errors.X``; URI, Proxy, Daemon and _ExceptionWrapper their Pyro4 tag.
    """
    try:
        return _pyro4_name_table().get(cls)
    except TypeError:  # unhashable
        return None


def class_for_pyro4_global(module: str, name: str) -> type | None:
    """The pyroplug class standing in for the Pyro4 global ``module.name`` (pickle's find_class), or None."""
    if module == "Pyro4.errors":
        return errors.ERRORS_BY_NAME.get(name)
    tag = f"{module}.{name}"
    if tag in _WIRE_MODULES:
        try:
            return _wire_class_for(tag)
        except ImportError:
            return None
    return None


class Serializer(ABC):
    """Base class of serializer plugins. Instances must be thread safe.

    Subclasses set ``name`` and ``serializer_id`` and implement :meth:`dumps` and :meth:`loads`;
    they override the call helpers when their wire form of a call is not the plain 4-tuple (json).
    ``replace`` is an optional hook the daemon installs for autoproxy: it is applied to every object
    the format cannot carry natively, before :func:`class_to_dict`.

    Errors: ``loads``/``loads_call`` raise SerializeError (SecurityError for refused class names) on any
    bad input; ``dumps``/``dumps_call`` raise SerializeError for values the format cannot carry.
    """

    name: ClassVar[str]
    serializer_id: ClassVar[int]
    #: False for formats that can run code on load (pickle, dill): never accepted by default
    safe: ClassVar[bool] = True
    #: the kinds of values that come back unchanged (type and value); words from :data:`ROUNDTRIP_TOKENS`:
    #: ``int`` is 64-bit, ``bigint`` any size, ``nan`` NaN and infinities, ``dict`` str keys, ``intkeys``
    #: int keys too, ``set`` non-empty sets, ``emptyset`` empty ones, ``nested_objects`` class-dict objects
    #: (URIs, exceptions) inside containers. The conformance suite generates values of these kinds.
    #: Instances may narrow or widen it per Config.
    roundtrip_types: frozenset[str] = frozenset({"none", "bool", "int", "float", "str", "list", "dict", "nested_objects"})

    def __init__(self, config: Config) -> None:
        self.config = config
        self.replace: Callable[[Any], Any] | None = None

    @abstractmethod
    def dumps(self, data: Any) -> bytes:
        """Serialize one value (a result, a handshake, an exception) to bytes."""

    @abstractmethod
    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        """Deserialize one value; bad input raises a pyroplug error, never anything else."""

    def dumps_call(self, obj: str, method: str, vargs: Any, kwargs: Any) -> bytes:
        """Serialize a call. The default is the 4-tuple ``(obj, method, vargs, kwargs)``."""
        return self.dumps((obj, method, vargs, kwargs))

    def loads_call(self, data: bytes | bytearray | memoryview) -> CallTuple:
        """Deserialize a call back to ``(obj, method, vargs, kwargs)``; SerializeError on a bad shape."""
        return check_call(self.loads(data))

    def convert(self, obj: Any) -> Any:
        """Fallback for objects the format cannot carry: the replace hook, then a class dict.

        When the hook replaces ``obj`` the replacement is returned as is (it may need converting in turn).
        Kernel wire classes (URI, Proxy, Daemon, _ExceptionWrapper) never go through the hook: they have a
        fixed encoding, and asking a Proxy for attributes could start remote calls.
        """
        if self.replace is not None and not hasattr(type(obj), "__pyro_wire_tag__"):
            replaced = self.replace(obj)
            if replaced is not obj:
                return replaced
        return class_to_dict(obj)

    # ---- Pyro4 spellings -------------------------------------------------------------
    def dumpsCall(self, obj: str, method: str, vargs: Any, kwargs: Any) -> bytes:  # noqa: N802
        return self.dumps_call(obj, method, vargs, kwargs)

    def loadsCall(self, data: bytes) -> CallTuple:  # noqa: N802
        return self.loads_call(data)

    def serializeData(self, data: Any, compress: bool = False) -> tuple[bytes, bool]:  # noqa: N802
        """Pyro4's API: (bytes, compressed?) with zlib under Pyro4's rule (>= 200 bytes and smaller)."""
        return _maybe_compress(self.dumps(data), compress)

    def deserializeData(self, data: bytes, compressed: bool = False) -> Any:  # noqa: N802
        return self.loads(_decompress(data) if compressed else data)

    def serializeCall(self, obj: str, method: str, vargs: Any, kwargs: Any, compress: bool = False) -> tuple[bytes, bool]:  # noqa: N802
        return _maybe_compress(self.dumps_call(obj, method, vargs, kwargs), compress)

    def deserializeCall(self, data: bytes, compressed: bool = False) -> CallTuple:  # noqa: N802
        return self.loads_call(_decompress(data) if compressed else data)

    register_class_to_dict = staticmethod(register_class_to_dict)
    unregister_class_to_dict = staticmethod(unregister_class_to_dict)
    register_dict_to_class = staticmethod(register_dict_to_class)
    unregister_dict_to_class = staticmethod(unregister_dict_to_class)
    class_to_dict = staticmethod(class_to_dict)
    dict_to_class = staticmethod(dict_to_class)
    make_exception = staticmethod(make_exception)
    recreate_classes = staticmethod(recreate_classes)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} id={self.serializer_id}>"


def _maybe_compress(data: bytes, compress: bool) -> tuple[bytes, bool]:
    if not compress or len(data) < 200:
        return data, False
    packed = zlib.compress(data)
    return (packed, True) if len(packed) < len(data) else (data, False)


def _decompress(data: bytes) -> bytes:
    try:
        return zlib.decompress(data)
    except zlib.error as exc:
        raise errors.SerializeError(f"invalid compressed data: {exc}") from exc
