"""The serializer kernel module (pyroplug.core.serializer) and plugin-level behaviour around it."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import pytest

from pyroplug.core import errors
from pyroplug.core.config import Config
from pyroplug.core.futures import _ExceptionWrapper
from pyroplug.core.plugins import BUILTIN_PLUGINS, make_plugin_manager, register_module
from pyroplug.core.registry import Registry
from pyroplug.core.serializer import (
    add_class_listener,
    check_call,
    class_for_pyro4_global,
    class_to_dict,
    class_walker,
    dict_to_class,
    make_exception,
    pyro4_global,
    register_class_to_dict,
    remove_class_listener,
    unregister_class_to_dict,
    wrap_error,
)
from pyroplug.core.uri import URI
from pyroplug.plugins.serializers import serpent as serpent_plugin
from pyroplug.plugins.serializers.json import JsonSerializer
from pyroplug.plugins.serializers.serpent import SerpentSerializer


@pytest.mark.parametrize("call", [
    ("o", "m", (), {}), ["o", "m", [1], None], ("o", "<batch>", [("a", (), {})], None),
])
def test_check_call_accepts(call: Any) -> None:
    assert check_call(call) == tuple(call)


@pytest.mark.parametrize("call", [
    None, "omvk", ("o", "m", ()), ("o", "m", (), {}, 5), (1, "m", (), {}), ("o", b"m", (), {}),
    ("o", "m", "vargs", {}), ("o", "m", (), []), ("o", "m", {1}, {}),
])
def test_check_call_refuses(call: Any) -> None:
    with pytest.raises(errors.SerializeError, match="invalid call message"):
        check_call(call)


def test_class_walker_is_top_down_like_pyro4() -> None:
    seen: list[dict] = []

    def convert(d: dict) -> str:
        seen.append(d)
        return "X"

    walk = class_walker(convert)
    inner = {"__class__": "inner"}
    value = {"a": [({"__class__": "outer", "nested": inner},)], "b": {inner["__class__"]}}
    assert walk(value) == {"a": [("X",)], "b": {"inner"}}
    assert seen == [{"__class__": "outer", "nested": inner}]  # the converter sees raw nested dicts


def test_class_to_dict_clears_pyro_daemon_without_touching_the_object() -> None:
    class Served:
        def __init__(self) -> None:
            self._pyroDaemon = object()
            self._pyroId = "obj_1"

    obj = Served()
    d = class_to_dict(obj)
    assert d["_pyroDaemon"] is None and d["_pyroId"] == "obj_1" and d["__class__"].endswith(".Served")
    assert obj._pyroDaemon is not None


def test_class_to_dict_forms() -> None:
    class WithState:
        def __getstate__(self) -> dict:
            return {"state": 1}

    class Slotted:
        __slots__ = ("a", "b")

        def __init__(self) -> None:
            self.a, self.b = 1, 2

    assert class_to_dict(WithState()) == {"state": 1}  # Pyro4: a custom __getstate__ dict as is
    assert class_to_dict(Slotted()) == {"a": 1, "b": 2, "__class__": f"{__name__}.Slotted"}
    assert class_to_dict(errors.NamingError("x"))["__class__"] == "Pyro4.errors.NamingError"
    with pytest.raises(ValueError):
        class_to_dict([1])
    with pytest.raises(errors.SerializeError, match="don't know how to serialize"):
        class_to_dict(iter([]))


def test_make_exception_attribute_rules() -> None:
    exc = make_exception(ValueError, {"args": ["x"], "attributes": {"__notes__": ["note"], "extra": 1}})
    assert exc.__notes__ == ["note"] and exc.extra == 1  # type: ignore[attr-defined]
    for attrs in ({"__class__": "x"}, {"__dict__": {}}, {"__traceback__": None}):
        with pytest.raises(errors.SecurityError):
            make_exception(ValueError, {"args": [], "attributes": attrs})
    with pytest.raises(errors.SerializeError):
        make_exception(ValueError, {"args": 5})
    with pytest.raises(errors.SerializeError):
        make_exception(ValueError, {"args": [], "attributes": [1]})


def test_dict_to_class_known_tags() -> None:
    assert dict_to_class({"__class__": "Pyro4.core.URI", "state": ["PYRO", "o", None, "h", 1]}) == URI("PYRO:o@h:1")
    err = dict_to_class({"__class__": "pyroplug.errors.DaemonError", "args": ["x"]})
    assert type(err) is errors.DaemonError
    import sqlite3

    sql = dict_to_class({"__class__": "sqlite3.OperationalError", "__exception__": True, "args": ["db"]})
    assert type(sql) is sqlite3.OperationalError
    wrapped = dict_to_class({"__class__": "Pyro4.futures._ExceptionWrapper", "exception": "not an exception"})
    assert isinstance(wrapped, _ExceptionWrapper) and wrapped.exception == "not an exception"
    with pytest.raises(errors.SerializeError, match="invalid URI state"):
        dict_to_class({"__class__": "Pyro4.core.URI", "state": [1, 2]})


def test_pyro4_pickle_names() -> None:
    assert pyro4_global(errors.SerializeError) == ("Pyro4.errors", "SerializeError")
    assert pyro4_global(URI) == ("Pyro4.core", "URI")
    assert pyro4_global(_ExceptionWrapper) == ("Pyro4.futures", "_ExceptionWrapper")
    assert pyro4_global(ValueError) is None and pyro4_global([]) is None
    assert class_for_pyro4_global("Pyro4.errors", "CommunicationError") is errors.CommunicationError
    assert class_for_pyro4_global("Pyro4.core", "URI") is URI
    assert class_for_pyro4_global("Pyro4.core", "Nope") is None
    from pyroplug.core.proxy import Proxy

    assert pyro4_global(Proxy) == ("Pyro4.core", "Proxy") and class_for_pyro4_global("Pyro4.core", "Proxy") is Proxy


def test_wrap_error_is_short() -> None:
    err = wrap_error(ValueError("x" * 1000), "invalid data")
    assert isinstance(err, errors.SerializeError) and len(str(err)) < 260
    assert str(err).startswith("invalid data: ValueError: xxx")


class Record(dict):
    """A dict subclass: serpent writes it as a plain dict unless a converter is registered for serpent."""


def test_serpent_too_registers_with_serpent() -> None:
    ser = SerpentSerializer(Config())
    rec = Record(a=1)
    assert ser.loads(ser.dumps(rec)) == {"a": 1}
    register_class_to_dict(Record, lambda r: {"__class__": "test.Record", "items": dict(r)}, serpent_too=False)
    try:
        assert b"test.Record" not in ser.dumps(rec)  # serpent handles dict subclasses itself, as in Pyro4
        register_class_to_dict(Record, lambda r: {"__class__": "test.Record", "items": dict(r)}, serpent_too=True)
        assert ser.dumps(rec) == b"# serpent utf-8 python3.2\n{'__class__':'test.Record','items':{'a':1}}"
    finally:
        unregister_class_to_dict(Record)
    assert b"test.Record" not in ser.dumps(rec)
    assert Record not in serpent_plugin._serpent._special_classes_registry


def test_class_listener_replays_only_serpent_too_registrations() -> None:
    class A:
        pass

    class B:
        pass

    told: list[tuple[type, Any]] = []

    def listener(cls: type, conv: Any) -> None:
        if cls in (A, B):
            told.append((cls, conv))

    register_class_to_dict(A, lambda o: {}, serpent_too=True)
    register_class_to_dict(B, lambda o: {}, serpent_too=False)
    try:
        add_class_listener(listener)
        assert [cls for cls, _ in told] == [A]
    finally:
        unregister_class_to_dict(A)
        unregister_class_to_dict(B)
        remove_class_listener(listener)
    assert (A, None) in told and (B, None) in told
    register_class_to_dict(A, lambda o: {}, serpent_too=True)
    unregister_class_to_dict(A)
    assert len(told) == 3


def test_json_module_from_config() -> None:
    cfg = Config()
    cfg.JSON_MODULE = "no_such_json_module_xyz"
    with pytest.raises(errors.PluginError, match="JSON_MODULE"):
        JsonSerializer(cfg)


@pytest.mark.parametrize("name", ["dill", "msgpack"])
def test_optional_dependency_missing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Without the library the builtin provides nothing and the registry names the extra to install."""
    dotted = f"pyroplug.plugins.serializers.{name}"
    spec = importlib.util.find_spec(dotted)
    assert spec is not None and spec.loader is not None
    monkeypatch.setitem(sys.modules, name, None)  # makes "import <name>" fail
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.pyroplug_serializers() == ()
    with pytest.raises(errors.PluginError, match=rf"pip install pyroplug\[{name}\]"):
        getattr(module, f"{name.capitalize()}Serializer")(Config())
    pm = make_plugin_manager(disabled="", autoload=False, builtins=tuple(b for b in BUILTIN_PLUGINS if b != dotted))
    register_module(pm, module, dotted)
    reg = Registry.build(pm)
    assert name not in reg.serializers and "serpent" in reg.serializers
    with pytest.raises(errors.PluginError, match=rf"pip install pyroplug\[{name}\]"):
        reg.serializer(name)
