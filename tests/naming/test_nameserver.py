"""NameServer API semantics, case by case against Pyro4 4.82's own NameServer (in-process reference)."""

from __future__ import annotations

import builtins
import threading
from typing import Any

import Pyro4.core
import Pyro4.errors
import Pyro4.naming
import pytest

from pyroplug import errors
from pyroplug.core.constants import NAMESERVER_NAME
from pyroplug.core.uri import URI
from pyroplug.naming import NameServer, type_meta
from pyroplug.naming.storages.dbm import DbmStorage
from pyroplug.naming.storages.memory import MemoryStorage

NS_TAG = "class:Pyro4.naming.NameServer"


class U:
    """A URI argument: a Pyro4 URI for the reference, a pyroplug URI for ours."""

    def __init__(self, text: str) -> None:
        self.text = text


def _arg(value: Any, pyro4: bool) -> Any:
    if isinstance(value, U):
        return Pyro4.core.URI(value.text) if pyro4 else URI(value.text)
    return value


def _normalize(value: Any) -> Any:
    if isinstance(value, (URI, Pyro4.core.URI)):
        return ("URI", str(value))
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, (list, tuple)):
        items = [_normalize(v) for v in value]
        return sorted(items) if items and all(isinstance(v, str) for v in items) and isinstance(value, list) else items
    return value


def _outcome(ns: Any, call: tuple[str, tuple, dict], pyro4: bool) -> Any:
    method, args, kwargs = call
    try:
        result = getattr(ns, method)(*[_arg(a, pyro4) for a in args], **{k: _arg(v, pyro4) for k, v in kwargs.items()})
    except Exception as exc:
        return exc
    return _normalize(result)


def _setup(ns: Any) -> None:
    ns.register(NAMESERVER_NAME, "PYRO:Pyro.NameServer@localhost:9090", metadata={NS_TAG})
    ns.register("app.a", "PYRO:a@localhost:1001", metadata={"x", "y"})
    ns.register("app.b", "PYRO:b@localhost:1002", metadata=["y"])
    ns.register("apple", "PYRO:c@localhost:1003")
    ns.register("other.app", "PYRO:d@./u:/tmp/d.sock")


def C(method: str, *args: Any, **kwargs: Any) -> tuple[str, tuple, dict]:  # noqa: N802 - reads like a call
    return method, args, kwargs


CASES: dict[str, list[tuple[str, tuple, dict]]] = {
    "count": [C("count")],
    "ping": [C("ping")],
    "lookup": [C("lookup", "app.a"), C("lookup", "app.a", return_metadata=True), C("lookup", "apple", True)],
    "lookup-unknown": [C("lookup", "nope"), C("lookup", "nope", return_metadata=True)],
    "lookup-non-str": [C("lookup", 42)],
    "register-overwrite": [C("register", "app.a", "PYRO:new@localhost:9"), C("lookup", "app.a", True)],
    "register-uri-object": [C("register", "u", U("PYRO:u@[::1]:7")), C("lookup", "u"), C("list", prefix="u")],
    "register-safe-duplicate": [C("register", "app.a", "PYRO:x@h:1", safe=True), C("lookup", "app.a")],
    "register-safe-new": [C("register", "fresh", "PYRO:x@h:1", safe=True), C("count")],
    "register-invalid-uri": [C("register", "bad", "not a uri"), C("register", "bad", "PYRO:x"), C("count")],
    "register-pyroname-uri": [C("register", "alias", "PYRONAME:app.a"), C("lookup", "alias")],
    "register-uri-wrong-type": [C("register", "bad", 12345), C("register", "bad", None)],
    "register-name-wrong-type": [C("register", 42, "PYRO:x@h:1"), C("register", None, "PYRO:x@h:1")],
    "register-metadata-str": [C("register", "m", "PYRO:x@h:1", metadata="tag"), C("lookup", "m")],
    "register-metadata-not-iterable": [C("register", "m", "PYRO:x@h:1", metadata=5)],
    "register-metadata-empty": [C("register", "m", "PYRO:x@h:1", metadata=[]), C("lookup", "m", return_metadata=True)],
    "register-metadata-tuple": [C("register", "m", "PYRO:x@h:1", metadata=("p", "q", "p")), C("lookup", "m", True)],
    "set_metadata": [C("set_metadata", "apple", ["new", "tags"]), C("lookup", "apple", True),
                     C("list", metadata_any={"new"})],
    "set_metadata-clear": [C("set_metadata", "app.a", None), C("lookup", "app.a", True),
                           C("set_metadata", "app.b", []), C("lookup", "app.b", True)],
    "set_metadata-errors": [C("set_metadata", "nope", ["x"]), C("set_metadata", "apple", "x"),
                            C("set_metadata", 3, ["x"]), C("set_metadata", "apple", 7)],
    "remove-name": [C("remove", "apple"), C("remove", "apple"), C("list")],
    "remove-self-protected": [C("remove", NAMESERVER_NAME), C("remove", prefix="Pyro."), C("remove", regex="Pyro"),
                              C("lookup", NAMESERVER_NAME)],
    "remove-prefix": [C("remove", prefix="app"), C("list")],
    "remove-regex": [C("remove", regex=r".*app"), C("list")],
    "remove-nothing": [C("remove"), C("remove", prefix=""), C("remove", "missing"), C("count")],
    "remove-bad-regex": [C("remove", regex="(unclosed")],
    "remove-name-falls-through": [C("remove", "missing", prefix="app."), C("list")],
    "list-all": [C("list"), C("list", return_metadata=True)],
    "list-prefix": [C("list", prefix="app"), C("list", prefix="app.", return_metadata=True), C("list", prefix="zz"),
                    C("list", prefix="")],
    "list-regex": [C("list", regex="app"), C("list", regex=r"app\.[ab]$", return_metadata=True),
                   C("list", regex=".*app"), C("list", regex="")],
    "list-bad-regex": [C("list", regex="[")],
    "list-metadata-all": [C("list", metadata_all=["y"]), C("list", metadata_all={"x", "y"}, return_metadata=True),
                          C("list", metadata_all=("x", "nope")), C("list", metadata_all=[])],
    "list-metadata-any": [C("list", metadata_any=["x", "nope"]), C("list", metadata_any={NS_TAG}, return_metadata=True),
                          C("list", metadata_any=["nope"])],
    "list-metadata-type-errors": [C("list", metadata_all="y"), C("list", metadata_any="x"), C("list", metadata_all=5)],
    "list-two-filters": [C("list", prefix="a", regex="b"), C("list", prefix="", metadata_any=["x"]),
                         C("list", metadata_all=["x"], metadata_any=["y"])],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_results_and_errors_as_pyro4(case: str) -> None:
    reference = Pyro4.naming.NameServer(Pyro4.naming.MemoryStorage())
    ours = NameServer(MemoryStorage())
    _setup(reference)
    _setup(ours)
    for call in CASES[case]:
        expected = _outcome(reference, call, pyro4=True)
        got = _outcome(ours, call, pyro4=False)
        if isinstance(expected, Exception):
            module = type(expected).__module__
            ours_class = getattr(errors if module.startswith("Pyro4") else builtins, type(expected).__name__)
            assert isinstance(got, ours_class), f"{call}: expected {expected!r}, got {got!r}"
            if isinstance(expected, (Pyro4.errors.NamingError, ValueError)) and not isinstance(expected, TypeError):
                assert str(got).split(":")[0] == str(expected).split(":")[0], f"{call}: {got} vs {expected}"
        else:
            assert got == expected, f"{call}: expected {expected!r}, got {got!r}"


# ---------------------------------------------------------------------- deliberate differences
def test_invalid_uri_is_a_naming_error_naming_the_uri() -> None:
    ns = NameServer()
    with pytest.raises(errors.NamingError, match="invalid uri 'not a uri'"):
        ns.register("x", "not a uri")


def test_empty_name_refused() -> None:
    """Pyro4 accepts '' (which no PYRONAME URI can address); pyroplug refuses it."""
    with pytest.raises(errors.NamingError, match="empty"):
        NameServer().register("", "PYRO:x@h:1")


def test_metadata_items_must_be_str() -> None:
    ns = NameServer()
    with pytest.raises(TypeError, match="metadata items must be str, not int"):
        ns.register("x", "PYRO:x@h:1", metadata=[1, 2])
    with pytest.raises(TypeError, match="should not be a str"):
        ns.register("x", "PYRO:x@h:1", metadata=b"bytes")
    with pytest.raises(TypeError, match="metadata items must be str"):
        ns.set_metadata("x", [None])
    assert ns.count() == 0


def test_metadata_returned_sorted_and_uri_objects_fresh() -> None:
    ns = NameServer()
    ns.register("x", "PYRO:x@h:1", metadata={"c", "a", "b"})
    uri, meta = ns.lookup("x", return_metadata=True)
    assert meta == ["a", "b", "c"]
    uri.host = "changed"
    assert str(ns.lookup("x")) == "PYRO:x@h:1"
    assert ns.list(return_metadata=True) == {"x": ("PYRO:x@h:1", ["a", "b", "c"])}


def test_metadata_refused_by_dbm_storage(tmp_path: Any) -> None:
    ns = NameServer(DbmStorage(str(tmp_path / "names")))
    try:
        with pytest.raises(errors.NamingError, match="dbm storage does not support metadata"):
            ns.register("x", "PYRO:x@h:1", metadata=["a"])
        ns.register("x", "PYRO:x@h:1")
        with pytest.raises(errors.NamingError, match="does not support metadata"):
            ns.set_metadata("x", ["a"])
        ns.set_metadata("x", None)
        with pytest.raises(errors.NamingError, match="metadata"):
            ns.list(metadata_any=["a"])
        assert ns.lookup("x", return_metadata=True) == (URI("PYRO:x@h:1"), [])
    finally:
        ns.storage.close()


def test_thread_safety_of_safe_register() -> None:
    """Many threads racing to register the same names with safe=True: each name is won exactly once."""
    ns = NameServer()
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def racer(n: int) -> None:
        barrier.wait()
        for i in range(200):
            try:
                ns.register(f"race{i}", f"PYRO:r{n}@h:{i + 1}", safe=True)
                wins.append(f"race{i}")
            except errors.NamingError:
                pass

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(wins) == sorted(f"race{i}" for i in range(200))
    assert ns.count() == 200


def test_type_meta() -> None:
    class Base:
        pass

    class Child(Base):
        pass

    expected = {f"class:{Child.__module__}.Child", f"class:{Base.__module__}.Base"}
    assert type_meta(Child) == expected
    assert type_meta(Child()) == expected
    assert type_meta(Child, prefix="k:") == {f"k:{Child.__module__}.Child", f"k:{Base.__module__}.Base"}
    assert type_meta(42) == set()
    assert type_meta(Child) == Pyro4.naming.type_meta(Child)


def test_exposed_interface_matches_pyro4() -> None:
    from Pyro4.util import get_exposed_members

    from pyroplug.core.expose import get_exposed_members as ours

    theirs = get_exposed_members(Pyro4.naming.NameServer, only_exposed=True)
    mine = ours(NameServer, only_exposed=True)
    assert mine == theirs
    assert mine["methods"] == {"count", "list", "lookup", "ping", "register", "remove", "set_metadata"}
