"""Arguments (positional and keyword) and return values of every type, for every serializer, both ways.

Each serializer's documented conversion (PYRO4-PROTOCOL.md 2.17) is written down once as a function
from the value sent to the value received; the pyro4->pyro4 cell proves the expectation is stock
Pyro4's, and the other cells prove pyroplug matches it as client, as daemon and on its own.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from tests.interop.support import SERIALIZERS, Cell, short, type_tree

pytestmark = pytest.mark.interop

VALUES: dict[str, Any] = {
    "none": None,
    "bool": True,
    "int": -7,
    "int64max": 2**63 - 1,
    "uint64max": 2**64 - 1,
    "bigint": 2**100,
    "negbigint": -(2**70),
    "float": 1.5,
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "complex": 1 + 2j,
    "str": "h\u00e9llo \u20ac \U0001f600",
    "emptystr": "",
    "bytes": b"\x00\xffab",
    "emptybytes": b"",
    "bytearray": bytearray(b"xy"),
    "tuple": (1, "a"),
    "list": [1, [2.5, None]],
    "set": {1, 2},
    "strset": {"a", "b"},
    "emptyset": set(),
    "frozenset": frozenset({3}),
    "dict": {"k": "v", "n": {"m": [True]}},
    "intkeys": {1: "one"},
    "nested": {"a": [1, (2, {3})], "b": {"c": None}},
    "datetime": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456),
    "datetime-tz": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
    "date": datetime.date(2024, 5, 6),
    "time": datetime.time(7, 8, 9),
    "timedelta": datetime.timedelta(seconds=90.5),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": decimal.Decimal("1.10"),
}


class Fails(NamedTuple):
    """The call fails with this exception class (short name); ``side`` says who raises it."""

    error: str
    side: str  # "client": while serializing the call; "daemon": the daemon answers with the error


class Ext(NamedTuple):
    """A stock Pyro4 *daemon* receives msgpack ext type ``code`` undecoded, as a ``msgpack.ExtType``."""

    code: int


class Unordered(list):  # noqa: FURB189 - a marker type
    """A set that became a list: the order is the sender's set iteration order, so compare as a multiset."""


class Unsupported(Exception):
    """Raised by a form function: the serializer cannot carry the value."""


def _b64(data: bytes | bytearray) -> dict[str, str]:
    return {"data": base64.b64encode(bytes(data)).decode("ascii"), "encoding": "base64"}


def serpent_form(v: Any) -> Any:
    """serpent: bytes -> base64 dict (not decoded by Pyro4), every set -> set ({} -> ()), dates -> ISO text,
    timedelta -> seconds, UUID and Decimal -> str; big ints, complex, NaN and inf survive."""
    t = type(v)
    if t in (bytes, bytearray):
        return _b64(v)
    if t in (set, frozenset):
        return {serpent_form(x) for x in v} if v else ()
    if t is tuple:
        return tuple(serpent_form(x) for x in v)
    if t is list:
        return [serpent_form(x) for x in v]
    if t is dict:
        return {serpent_form(k): serpent_form(x) for k, x in v.items()}
    if t in (datetime.datetime, datetime.date, datetime.time):
        return v.isoformat()
    if t is datetime.timedelta:
        return v.total_seconds()
    if t in (uuid.UUID, decimal.Decimal):
        return str(v)
    return v


def json_form(v: Any, client: str) -> Any:
    """json: sequences and sets -> lists (frozenset only from a pyroplug client), keys -> str, datetime
    and date -> ISO text, UUID and Decimal -> str; bytes, complex, time and timedelta unsupported."""
    t = type(v)
    if t in (bytes, bytearray, complex, datetime.time, datetime.timedelta):
        raise Unsupported(t.__name__)
    if t is frozenset and client == "pyro4":
        raise Unsupported("frozenset")
    if t in (set, frozenset):
        return Unordered(json_form(x, client) for x in v)
    if t in (list, tuple):
        return [json_form(x, client) for x in v]
    if t is dict:
        return {str(k) if not isinstance(k, str) else k: json_form(x, client) for k, x in v.items()}
    if t in (datetime.datetime, datetime.date):
        return v.isoformat()
    if t in (uuid.UUID, decimal.Decimal):
        return str(v)
    return v


def marshal_form(v: Any) -> Any:
    """marshal: bytearray -> bytes, UUID -> str; sets, tuples and complex survive; dates, timedelta and
    Decimal unsupported (only builtin types)."""
    t = type(v)
    if t in (datetime.datetime, datetime.date, datetime.time, datetime.timedelta, decimal.Decimal):
        raise Unsupported(t.__name__)
    if t is bytearray:
        return bytes(v)
    if t is uuid.UUID:
        return str(v)
    if t in (list, tuple, set, frozenset):
        return t(marshal_form(x) for x in v)
    if t is dict:
        return {k: marshal_form(x) for k, x in v.items()}
    return v


def msgpack_form(v: Any, client: str, daemon_pyro4: bool) -> Any:
    """msgpack: sequences and sets -> lists (frozenset only from a pyroplug client), bytearray -> bytes,
    UUID and Decimal -> str; big ints, complex, naive datetimes and dates travel as ext types (a stock
    Pyro4 daemon does not decode those in call arguments); aware datetimes, time and timedelta unsupported."""
    t = type(v)
    if t in (datetime.time, datetime.timedelta) or (t is datetime.datetime and v.tzinfo is not None):
        raise Unsupported(t.__name__)
    if t is frozenset and client == "pyro4":
        raise Unsupported("frozenset")
    if t in (set, frozenset):
        return Unordered(msgpack_form(x, client, daemon_pyro4) for x in v)
    if t in (list, tuple):
        return [msgpack_form(x, client, daemon_pyro4) for x in v]
    if t is dict:
        return {k: msgpack_form(x, client, daemon_pyro4) for k, x in v.items()}
    if t is bytearray:
        return bytes(v)
    if t in (uuid.UUID, decimal.Decimal):
        return str(v)
    if daemon_pyro4:
        if t is int and not -(2**63) <= v < 2**64:
            return Ext(0x31)
        if t is complex:
            return Ext(0x30)
        if t is datetime.datetime:
            return Ext(0x32)
        if t is datetime.date:
            return Ext(0x33)
    return v


def expected(ser: str, name: str, value: Any, cell: Cell) -> tuple[Any, Any]:
    """(what the daemon's method receives, what the client gets back from echo) for one value."""
    client, daemon_pyro4 = cell.client, cell.daemon == "pyro4"
    if ser == "msgpack" and name == "intkeys":
        # msgpack >= 1.0 refuses non-str map keys on unpacking (strict_map_key): the *daemon* fails.
        # Stock Pyro4 answers with msgpack's raw ValueError, pyroplug with a SerializeError.
        failure = Fails("ValueError" if daemon_pyro4 else "SerializeError", "daemon")
        return failure, failure
    forms: dict[str, Callable[[Any], Any]] = {
        "serpent": serpent_form,
        "json": lambda v: json_form(v, client),
        "marshal": marshal_form,
        "msgpack": lambda v: msgpack_form(v, client, daemon_pyro4),
        "pickle": lambda v: v,
        "dill": lambda v: v,
    }
    try:
        sent = forms[ser](value)
    except Unsupported:
        failure = Fails("SerializeError", "client")
        return failure, failure
    back = msgpack_form(value, client, False) if ser == "msgpack" else sent
    return sent, back


def matches(expect: Any, observed: Any) -> bool:
    """Compare an expectation (a value, possibly holding Fails, Ext or Unordered) with an observed type tree."""
    if isinstance(expect, Fails):
        return isinstance(observed, str) and observed.startswith(f"EXC {expect.error}:")
    if isinstance(expect, Ext):
        return isinstance(observed, str) and observed.startswith(f"ExtType:ExtType(code={expect.code},")
    if isinstance(expect, Unordered):
        return (isinstance(observed, list) and observed[0] == "list"
                and sorted(map(repr, map(type_tree, expect))) == sorted(map(repr, observed[1])))
    if type(expect) in (list, tuple):
        return (isinstance(observed, list) and observed[0] == type(expect).__name__ and len(observed[1]) == len(expect)
                and all(map(matches, expect, observed[1])))
    if type(expect) is dict:
        if not (isinstance(observed, list) and observed[0] == "dict" and len(observed[1]) == len(expect)):
            return False
        received = {repr(k): v for k, v in observed[1]}
        return all(matches(v, received.get(repr(type_tree(k)))) for k, v in expect.items())
    return type_tree(expect) == observed


SNIPPET = """
from service import type_tree
p = proxy(uri, ser)
def attempt(fn):
    try:
        return fn()
    except Exception as exc:
        return "EXC %s: %s" % (type(exc).__name__, exc)
result = {}
for name, v in values.items():
    sent = attempt(lambda: p.types(v, kw=v))
    back = attempt(lambda: type_tree(p.echo(v)))
    if isinstance(sent, dict):
        result[name] = (sent["args"][0], sent["kwargs"]["kw"], back)
    else:
        result[name] = (sent, sent, back)
"""


@pytest.mark.parametrize("ser", SERIALIZERS)
def test_argument_and_result_conversions(cell: Cell, ser: str) -> None:
    """Every value as positional arg, keyword arg and return value; all mismatches reported at once."""
    observed = cell.run(SNIPPET, ser=ser, values=VALUES)
    problems = []
    for name, value in VALUES.items():
        sent, back = expected(ser, name, value, cell)
        positional, keyword, returned = observed[name]
        for what, exp, got in (("positional", sent, positional), ("keyword", sent, keyword), ("returned", back, returned)):
            if not matches(exp, got):
                problems.append(f"{name} {what}: expected {exp!r} (tree {_tree_or(exp)}), got {got!r}")
    assert not problems, f"{cell} {ser}:\n" + "\n".join(problems)


def _tree_or(exp: Any) -> Any:
    return exp if isinstance(exp, (Fails, Ext)) else type_tree(exp)


@pytest.mark.parametrize("ser", [s for s in SERIALIZERS if s != "dill"])  # dill pickles even locks
def test_client_side_serialize_error_keeps_the_proxy_usable(cell: Cell, ser: str) -> None:
    """A value the serializer cannot carry (a lock) fails in the client, before anything is sent."""
    result = cell.run(
        """
p = proxy(uri, ser)
err = catch(p.echo, threading.Lock())
result = [err["__exception__"], p.add(1, 2)]
""",
        ser=ser,
    )
    if cell.client == "pyro4" and ser in ("serpent", "pickle"):
        # stock Pyro4 lets serpent's and pickle's own TypeError through; pyroplug raises SerializeError
        assert short(result[0]) == "TypeError", result
    else:
        assert short(result[0]) == "SerializeError", result
    assert result[1] == 3


@pytest.mark.parametrize("ser", SERIALIZERS)
def test_plain_user_objects(cell: Cell, ser: str) -> None:
    """An instance of a plain user class (``service.Point``, importable on both sides) as an argument.

    Class-dict serializers send ``vars()`` plus ``"__class__": "service.Point"``, and receivers refuse
    unregistered class names. Stock Pyro4 on Python >= 3.11 omits the tag (the default
    ``object.__getstate__`` quirk, PYRO4-PROTOCOL 2.17), so its objects arrive as plain dicts, except
    with serpent, which tags them itself. The pickle family sends the class by reference.
    """
    r = cell.run(
        """
from service import Point
p = proxy(uri, ser)
try:
    result = p.types(Point(1, 2))["args"][0]
except Exception as exc:
    result = describe(exc)
""",
        ser=ser,
    )
    if ser in ("pickle", "dill"):
        assert r == "Point:Point(1, 2)"
    elif cell.client == "pyro4" and ser != "serpent":
        # Pyro4 limitation (Python >= 3.11): the object travels untagged and arrives as a dict
        assert r == type_tree({"x": 1, "y": 2})
    else:
        assert short(r["__exception__"]) == "SerializeError", r
        assert "unsupported serialized class: service.Point" in r["str"]
        assert r["remote_traceback"], "refused by the daemon"
