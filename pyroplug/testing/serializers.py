"""Serializer conformance suite: subclass :class:`SerializerConformance` and give it a ``serializer_class``.

Usage (a third-party plugin's tests)::

    from pyroplug.testing.serializers import SerializerConformance

    class TestMySerializer(SerializerConformance):
        @pytest.fixture
        def serializer_class(self):
            return MySerializer

The suite generates values of the kinds the serializer lists in ``roundtrip_types`` (see
:data:`pyroplug.core.serializer.ROUNDTRIP_TOKENS`) and checks calls, exceptions, URIs, exception
wrappers, the replace hook, class-name refusal and hostile input. Override the ``config`` fixture to test
a serializer under other settings.
"""

from __future__ import annotations

import datetime
import math
import pickle
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyroplug.core import errors
from pyroplug.core.config import Config
from pyroplug.core.futures import _ExceptionWrapper
from pyroplug.core.serializer import (
    ROUNDTRIP_TOKENS,
    Serializer,
    register_class_to_dict,
    register_dict_to_class,
    unregister_class_to_dict,
    unregister_dict_to_class,
)
from pyroplug.core.uri import URI

__all__ = ["SerializerConformance", "assert_same", "same", "value_strategy"]

#: hypothesis settings of the suite: few examples, so a whole run takes seconds
SUITE_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
TRACEBACK = ["Traceback (most recent call last):\n", '  File "x.py", line 1, in f\n', "ValueError: boom\n"]
URIS = (
    "PYRO:obj@localhost:9090",
    "PYRO:obj@[::1]:5555",
    "PYRO:obj@./u:/tmp/pyro.sock",
    "PYRONAME:some.name@nshost:9090",
    "PYROMETA:meta1,meta2@localhost:9090",
)


# ---- values ---------------------------------------------------------------------------------------
def value_strategy(types: frozenset[str]) -> st.SearchStrategy[Any]:
    """Values built only from the kinds in ``types`` (words of ROUNDTRIP_TOKENS)."""
    unknown = set(types) - ROUNDTRIP_TOKENS
    if unknown:
        raise ValueError(f"unknown roundtrip_types: {sorted(unknown)}")
    text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
    leaves: list[st.SearchStrategy[Any]] = []
    if "none" in types:
        leaves.append(st.none())
    if "bool" in types:
        leaves.append(st.booleans())
    if "int" in types:
        leaves.append(st.integers(-(2**63), 2**63 - 1))
    if "bigint" in types:
        leaves.append(st.integers(-(2**200), 2**200))
    if "float" in types:
        nan = "nan" in types
        leaves.append(st.floats(allow_nan=nan, allow_infinity=nan))
    if "str" in types:
        leaves.append(text)
    if "bytes" in types:
        leaves.append(st.binary(max_size=12))
    if "bytearray" in types:
        leaves.append(st.binary(max_size=12).map(bytearray))
    if "complex" in types:
        leaves.append(st.complex_numbers(allow_nan=False, allow_infinity=False))
    if "datetime" in types:
        leaves.append(st.datetimes(datetime.datetime(1971, 1, 1), datetime.datetime(2100, 1, 1)))
    if "date" in types:
        leaves.append(st.dates())
    # a dict with a "__class__" key is a class dict to serializers that recreate classes (as in Pyro4)
    keys: st.SearchStrategy[Any] = text.filter(lambda key: key != "__class__")
    if "intkeys" in types:
        keys = keys | st.integers(-(2**31), 2**31)
    hashables = st.integers(-1000, 1000) | text
    min_set = 0 if "emptyset" in types else 1
    if "set" in types:
        leaves.append(st.sets(hashables, min_size=min_set, max_size=5))
    if "frozenset" in types:
        leaves.append(st.frozensets(hashables, min_size=min_set, max_size=5))

    def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        options: list[st.SearchStrategy[Any]] = []
        if "list" in types:
            options.append(st.lists(children, max_size=4))
        if "tuple" in types:
            options.append(st.lists(children, max_size=4).map(lambda items: tuple(items)))
        if "dict" in types:
            options.append(st.dictionaries(keys, children, max_size=4))
        return st.one_of(options) if options else children

    return st.recursive(st.one_of(leaves), containers, max_leaves=12)


def same(a: Any, b: Any) -> bool:
    """Equal in type and value, recursively; NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or a == b
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def assert_same(result: Any, expected: Any) -> None:
    """Assert :func:`same`, with both values in the message."""
    assert same(result, expected), f"round trip changed the value: sent {expected!r}, got {result!r}"


def _errors_only(action: Any, *args: Any) -> Any:
    """Run ``action``; any exception other than a pyroplug error fails the test."""
    try:
        return action(*args)
    except errors.PyroError:
        return None


def _lists(value: Any) -> Any:
    """Tuples as lists, recursively (formats without tuples send arrays)."""
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


class Thing:
    """A plain object no serializer accepts by name: turned into a URI by the replace hook."""

    def __init__(self, x: int = 1) -> None:
        self.x = x


class Point:
    """A class with registered class<->dict converters."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


def _exception_samples() -> list[BaseException]:
    samples: list[BaseException] = [
        ValueError("boom", 42),
        KeyError("key"),
        ZeroDivisionError("division by zero"),
        StopIteration(),
        OSError(1234, "an errno without a subclass"),
        RuntimeError("with attributes"),
    ]
    samples[-1].extra = [1, "two"]  # type: ignore[attr-defined]
    samples += [cls(f"{name} happened") for name, cls in sorted(errors.ERRORS_BY_NAME.items())]
    for exc in samples:
        exc._pyroTraceback = list(TRACEBACK)  # type: ignore[attr-defined]
    return samples


def _assert_same_exception(result: Any, expected: BaseException) -> None:
    assert type(result) is type(expected), f"expected {type(expected)}, got {result!r}"
    assert tuple(result.args) == tuple(expected.args)
    assert vars(result) == vars(expected)
    assert getattr(result, "_pyroTraceback", None) == TRACEBACK


# ---- the suite ------------------------------------------------------------------------------------
class SerializerConformance:
    """What every serializer plugin must do. Subclasses provide the ``serializer_class`` fixture."""

    @pytest.fixture
    def config(self) -> Config:
        """A default Config that ignores the environment."""
        return Config()

    @pytest.fixture
    def serializer(self, serializer_class: type[Serializer], config: Config) -> Serializer:
        """A fresh serializer instance."""
        return serializer_class(config)

    def roundtrip(self, serializer: Serializer, value: Any) -> Any:
        data = serializer.dumps(value)
        assert type(data) is bytes
        return serializer.loads(data)

    # -- identity ---------------------------------------------------------------------------------
    def test_declares_name_and_id(self, serializer: Serializer) -> None:
        assert isinstance(serializer.name, str) and serializer.name
        assert isinstance(serializer.serializer_id, int) and 0 < serializer.serializer_id < 256
        assert isinstance(type(serializer).safe, bool)
        assert set(serializer.roundtrip_types) <= ROUNDTRIP_TOKENS
        assert serializer.name in repr(serializer)

    # -- plain values -----------------------------------------------------------------------------
    def test_roundtrip_values(self, serializer: Serializer) -> None:
        @SUITE_SETTINGS
        @given(value_strategy(serializer.roundtrip_types))
        def check(value: Any) -> None:
            assert_same(self.roundtrip(serializer, value), value)

        check()

    def test_roundtrip_each_kind(self, serializer: Serializer) -> None:
        samples = {
            "none": None, "bool": True, "int": -(2**63), "bigint": 2**100 + 1, "float": -1.5e-300,
            "nan": math.inf, "str": "héllo \u20ac \x00 \U0001f40d", "bytes": b"\x00\xff bytes",
            "bytearray": bytearray(b"\x01\x02"), "tuple": (1, "a", (2,)), "list": [1, [2, [3]]],
            "dict": {"a": {"b": [1]}}, "intkeys": {1: "one", -2: "two"}, "set": {1, 2, "three"},
            "emptyset": set(), "frozenset": frozenset({4, 5}), "complex": complex(1.5, -2),
            "datetime": datetime.datetime(2024, 2, 29, 13, 14, 15, 161718), "date": datetime.date(1999, 12, 31),
        }
        for kind in sorted(serializer.roundtrip_types - {"nested_objects"}):
            assert_same(self.roundtrip(serializer, samples[kind]), samples[kind])
        if "nan" in serializer.roundtrip_types:
            assert math.isnan(self.roundtrip(serializer, float("nan")))
            assert self.roundtrip(serializer, [-math.inf]) == [-math.inf]

    def test_loads_accepts_bytes_bytearray_memoryview(self, serializer: Serializer) -> None:
        value = {"key": [1, 2.5, "x"] * 50}
        data = serializer.dumps(value)
        for form in (data, bytearray(data), memoryview(data), memoryview(b"xx" + data)[2:]):
            assert serializer.loads(form) == value
        call = serializer.dumps_call("obj", "method", (1, 2), {"k": "v"})
        for form in (call, bytearray(call), memoryview(call)):
            obj, method, vargs, kwargs = serializer.loads_call(form)
            assert (obj, method, list(vargs), kwargs) == ("obj", "method", [1, 2], {"k": "v"})

    def test_pyro4_data_api(self, serializer: Serializer) -> None:
        value = ["compress me"] * 100
        data, compressed = serializer.serializeData(value, compress=True)
        assert compressed
        assert serializer.deserializeData(data, compressed=True) == value
        data, compressed = serializer.serializeCall("o", "m", ["x" * 300], {}, compress=True)
        assert compressed
        assert serializer.deserializeCall(data, compressed=True)[:2] == ("o", "m")
        with pytest.raises(errors.SerializeError):
            serializer.deserializeData(b"not zlib", compressed=True)

    # -- calls ------------------------------------------------------------------------------------
    def test_call_roundtrip(self, serializer: Serializer) -> None:
        values = value_strategy(serializer.roundtrip_types)

        @SUITE_SETTINGS
        @given(
            st.text(max_size=10), st.text(min_size=1, max_size=10), st.lists(values, max_size=3),
            st.dictionaries(st.text(max_size=5), values, max_size=3), st.booleans(),
        )
        def check(obj: str, method: str, vargs: list, kwargs: dict, as_tuple: bool) -> None:
            sent = tuple(vargs) if as_tuple else vargs
            data = serializer.dumps_call(obj, method, sent, kwargs)
            assert type(data) is bytes
            r_obj, r_method, r_vargs, r_kwargs = serializer.loads_call(data)
            assert (r_obj, r_method) == (obj, method)
            assert type(r_vargs) in (list, tuple)
            assert_same(list(r_vargs), list(vargs))
            assert_same(r_kwargs, kwargs)

        check()

    @pytest.mark.parametrize("method, vargs", [
        ("__getattr__", ("prop",)), ("__setattr__", ("prop", 42)),
        ("<batch>", [("add", (1,), {}), ("fail", (), {"x": 1})]),
    ])
    def test_call_with_kwargs_none(self, serializer: Serializer, method: str, vargs: Any) -> None:
        obj, r_method, r_vargs, kwargs = serializer.loads_call(serializer.dumps_call("thing", method, vargs, None))
        assert (obj, r_method, kwargs) == ("thing", method, None)
        assert _lists(r_vargs) == _lists(vargs)

    @pytest.mark.parametrize("value", [
        42, "text", None, ("obj", "method"), ["a", "b", "c", "d", "e"], ("obj", "method", 5, {}),
        ("obj", 7, [], {}), ("obj", "method", [], [1]), {"object": "o", "method": "m"},
    ])
    def test_bad_call_shape(self, serializer: Serializer, value: Any) -> None:
        with pytest.raises(errors.SerializeError):
            serializer.loads_call(serializer.dumps(value))

    # -- exceptions and Pyro objects --------------------------------------------------------------
    @pytest.mark.parametrize("exc", _exception_samples(), ids=lambda e: type(e).__name__)
    def test_exception_roundtrip(self, serializer: Serializer, exc: BaseException) -> None:
        _assert_same_exception(self.roundtrip(serializer, exc), exc)

    def test_exception_nested_in_batch_result(self, serializer: Serializer) -> None:
        exc = ValueError("boom")
        exc._pyroTraceback = list(TRACEBACK)  # type: ignore[attr-defined]
        wrapper = self.roundtrip(serializer, _ExceptionWrapper(exc))
        assert type(wrapper) is _ExceptionWrapper
        _assert_same_exception(wrapper.exception, exc)
        with pytest.raises(ValueError, match="boom"):
            wrapper.raiseIt()
        if "nested_objects" in serializer.roundtrip_types:
            result = self.roundtrip(serializer, [2, _ExceptionWrapper(exc)])
            assert result[0] == 2 and type(result[1]) is _ExceptionWrapper
            _assert_same_exception(result[1].exception, exc)

    @pytest.mark.parametrize("text", URIS)
    def test_uri_roundtrip(self, serializer: Serializer, text: str) -> None:
        uri = URI(text)
        result = self.roundtrip(serializer, uri)
        assert type(result) is URI and result == uri and str(result) == str(uri)
        if "nested_objects" in serializer.roundtrip_types:
            assert self.roundtrip(serializer, {"uris": [uri, uri]}) == {"uris": [uri, uri]}
            args = serializer.loads_call(serializer.dumps_call("o", "m", [[uri]], {"u": [uri]}))
            assert list(args[2]) == [[uri]] and args[3] == {"u": [uri]}
        else:
            with pytest.raises(errors.SerializeError):
                serializer.dumps([uri])
        args = serializer.loads_call(serializer.dumps_call("o", "m", [uri], {"u": uri}))
        assert list(args[2]) == [uri] and args[3] == {"u": uri}

    def test_replace_hook(self, serializer: Serializer) -> None:
        target = URI("PYRO:replaced@localhost:1234")
        serializer.replace = lambda obj: target if isinstance(obj, Thing) else obj
        assert self.roundtrip(serializer, Thing()) == target
        if "nested_objects" in serializer.roundtrip_types:
            assert self.roundtrip(serializer, {"t": [Thing(), 1]}) == {"t": [target, 1]}
        assert list(serializer.loads_call(serializer.dumps_call("o", "m", [Thing()], {}))[2]) == [target]

    def test_replace_hook_skips_pyro_objects(self, serializer: Serializer) -> None:
        """URIs, proxies and exception wrappers have fixed encodings; a hook that inspects attributes
        (as autoproxy does) must not see a Proxy, whose attribute access could make remote calls."""
        from pyroplug.core.proxy import Proxy

        seen: list[type] = []

        def record(obj: Any) -> Any:
            seen.append(type(obj))
            return obj

        serializer.replace = record
        proxy = Proxy("PYRO:obj@localhost:9090")
        for value in (URI("PYRO:obj@localhost:9090"), proxy, _ExceptionWrapper(ValueError("x"))):
            serializer.dumps(value)
            serializer.dumps_call("o", "m", [value], {})
        assert not {URI, Proxy, _ExceptionWrapper} & set(seen)
        assert type(self.roundtrip(serializer, proxy)) is Proxy

    # -- refusals (formats that send objects as Pyro4 class dicts) -------------------------------
    def _class_dicts_only(self, serializer: Serializer) -> None:
        if not type(serializer).safe:
            pytest.skip("pickle-family formats carry objects natively; class dicts are plain dicts there")

    def test_unregistered_object_is_refused_on_receipt(self, serializer: Serializer) -> None:
        self._class_dicts_only(serializer)
        with pytest.raises(errors.SerializeError, match="unsupported serialized class"):
            self.roundtrip(serializer, Thing())

    @pytest.mark.parametrize("payload", [
        {"__class__": "some.module.Unknown", "x": 1},
        {"__class__": "builtins.print", "__exception__": True, "args": [], "attributes": {}},
        {"__class__": "builtins.ValueError", "args": ["no __exception__ flag"]},
        {"__class__": "Pyro4.errors.NoSuchError", "__exception__": True, "args": [], "attributes": {}},
        {"__class__": 42},
    ])
    def test_unknown_class_name(self, serializer: Serializer, payload: dict) -> None:
        self._class_dicts_only(serializer)
        with pytest.raises(errors.SerializeError):
            serializer.loads(serializer.dumps(payload))
        with pytest.raises(errors.SerializeError):
            serializer.loads_call(serializer.dumps_call("o", "m", [payload], {}))

    def test_unknown_global_in_native_format(self, serializer: Serializer) -> None:
        if type(serializer).safe:
            pytest.skip("only for formats that name classes themselves")
        data = pickle.dumps(Thing(), 2).replace(b"pyroplug.testing.serializers", b"pyroplug_no_such_module_x__")
        with pytest.raises(errors.SerializeError):
            serializer.loads(data)

    @pytest.mark.parametrize("payload", [
        {"__class__": "os.__system__"},
        {"__class__": "__builtins__.eval", "__exception__": True, "args": [], "attributes": {}},
        {"__class__": "builtins.ValueError", "__exception__": True, "args": ["x"], "attributes": {"__init__": 1}},
    ])
    def test_double_underscore_names_are_refused(self, serializer: Serializer, payload: dict) -> None:
        self._class_dicts_only(serializer)
        with pytest.raises(errors.SecurityError):
            serializer.loads(serializer.dumps([payload]))

    def test_registered_class_converters(self, serializer: Serializer) -> None:
        self._class_dicts_only(serializer)
        tag = "pyroplug.testing.serializers.Point"
        register_class_to_dict(Point, lambda p: {"__class__": tag, "xy": [p.x, p.y]})
        register_dict_to_class(tag, lambda name, d: Point(*d["xy"]))
        try:
            assert self.roundtrip(serializer, Point(3, 4)) == Point(3, 4)
            if "nested_objects" in serializer.roundtrip_types:
                assert self.roundtrip(serializer, {"p": [Point(1, 2)]}) == {"p": [Point(1, 2)]}
        finally:
            unregister_class_to_dict(Point)
            unregister_dict_to_class(tag)
        with pytest.raises(errors.SerializeError):
            self.roundtrip(serializer, Point(3, 4))

    # -- hostile input ----------------------------------------------------------------------------
    def test_garbage_raises_pyroplug_errors_only(self, serializer: Serializer) -> None:
        @SUITE_SETTINGS
        @given(st.binary(max_size=64))
        def check(data: bytes) -> None:
            _errors_only(serializer.loads, data)
            _errors_only(serializer.loads_call, data)

        if not type(serializer).safe:
            pytest.skip("random bytes may name arbitrary globals in an unsafe format; see the mutation test")
        check()

    def test_mutated_payloads_raise_pyroplug_errors_only(self, serializer: Serializer) -> None:
        exc = ValueError("boom")
        exc._pyroTraceback = list(TRACEBACK)  # type: ignore[attr-defined]
        valid = [
            serializer.dumps_call("thing", "add", [1, "two", 3.0], {"b": [2]}),
            serializer.dumps(exc),
            serializer.dumps(URI("PYRO:obj@localhost:9090")),
            serializer.dumps({"list": list(range(20)), "text": "x" * 40}),
        ]

        @SUITE_SETTINGS
        @given(st.sampled_from(valid), st.integers(0, 10_000), st.integers(0, 255), st.booleans())
        def check(data: bytes, where: int, byte: int, truncate: bool) -> None:
            where %= len(data)
            mutated = data[:where] if truncate else data[:where] + bytes([byte]) + data[where + 1:]
            _errors_only(serializer.loads, mutated)
            _errors_only(serializer.loads_call, mutated)

        check()
        for data in valid:
            for cut in range(len(data)):
                _errors_only(serializer.loads, data[:cut])

    def test_empty_payload(self, serializer: Serializer) -> None:
        with pytest.raises(errors.SerializeError):
            serializer.loads(b"")
        with pytest.raises(errors.SerializeError):
            serializer.loads_call(b"")

    def test_too_deep_to_serialize(self, serializer: Serializer) -> None:
        with pytest.raises(errors.SerializeError):
            serializer.dumps(_nested(100_000))

    def test_unserializable_value(self, serializer: Serializer) -> None:
        with pytest.raises(errors.SerializeError):
            serializer.dumps(i for i in range(3))

    # -- threads ----------------------------------------------------------------------------------
    def test_thread_safe(self, serializer: Serializer) -> None:
        failures: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(200):
                    value = {"n": n, "i": i, "items": [n, i, "x" * (i % 7)]}
                    assert serializer.loads(serializer.dumps(value)) == value
                    call = serializer.loads_call(serializer.dumps_call("o", f"m{n}", [i], {}))
                    assert call[1] == f"m{n}" and list(call[2]) == [i]
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures

