"""Every registered name-server storage passes the storage conformance suite; storage plugin plumbing."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from pyroplug.core import plugins
from pyroplug.core.config import Config
from pyroplug.core.errors import NamingError, PluginError
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.registry import Registry, get_registry
from pyroplug.naming import make_storage
from pyroplug.naming.storage import Storage, split_storage_spec
from pyroplug.naming.storages.memory import MemoryStorage
from pyroplug.naming.storages.sql import SqlStorage
from pyroplug.testing.storages import StorageConformance

SCHEMES = sorted(get_registry().storages)


def test_builtin_schemes_registered() -> None:
    assert {"memory", "sql", "dbm"} <= set(SCHEMES)
    assert get_registry().storage("sql") is SqlStorage


class TestEveryStorage(StorageConformance):
    @pytest.fixture(params=SCHEMES)
    def storage_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Storage]:
        cls = get_registry().storage(request.param)
        location = str(tmp_path / f"names.{request.param}") if cls.persistent else ""
        return lambda: make_storage(f"{request.param}:{location}" if location else request.param, Config())


def test_split_storage_spec() -> None:
    assert split_storage_spec(None) == ("memory", "")
    assert split_storage_spec("memory") == ("memory", "")
    assert split_storage_spec("sql:/tmp/x:y.db") == ("sql", "/tmp/x:y.db")
    assert split_storage_spec(" DBM:names ") == ("dbm", "names")


def test_invalid_storage_strings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid storage type 'redis:x'.*available: dbm, memory, sql"):
        make_storage("redis:x")
    with pytest.raises(ValueError, match="needs a database file"):
        make_storage("sql:")
    with pytest.raises(ValueError, match="needs a file name"):
        make_storage("dbm:")
    with pytest.raises(ValueError, match="in-memory sqlite"):
        make_storage("sql::memory:")
    with pytest.raises(ValueError, match="takes no location"):
        make_storage("memory:somewhere")
    store = MemoryStorage()
    assert make_storage(store) is store
    with pytest.raises(NamingError, match="cannot open"):
        make_storage(f"sql:{tmp_path}/no/such/dir/names.db")


def test_unknown_scheme_lists_available() -> None:
    with pytest.raises(PluginError, match="unknown name-server storage 'etcd'; available: dbm, memory, sql"):
        get_registry().storage("etcd")


class _Redis(Storage):
    """A stand-in third-party storage (dict based) registered through the hook."""

    scheme = "redis"

    def __init__(self, location: str = "", config: Config | None = None) -> None:
        super().__init__(location, config)
        self.data: dict[str, tuple[str, frozenset[str]]] = {}

    def __getitem__(self, name: str) -> tuple[str, frozenset[str]]:
        return self.data[name]

    def __setitem__(self, name: str, value: tuple[str, object]) -> None:  # type: ignore[override]
        self.data[name] = (value[0], frozenset(value[1] or ()))  # type: ignore[call-overload]

    def __delitem__(self, name: str) -> None:
        del self.data[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self.data))

    def __len__(self) -> int:
        return len(self.data)


class _ThirdParty:
    @hookimpl
    def pyroplug_ns_storages(self) -> list[type[Storage]]:
        return [_Redis]


class _Duplicate:
    @hookimpl
    def pyroplug_ns_storages(self) -> list[type[Storage]]:
        class OtherMemory(MemoryStorage):
            pass

        return [OtherMemory]


class _NotAStorage:
    @hookimpl
    def pyroplug_ns_storages(self) -> list[type]:
        return [dict]


def test_third_party_storage_plugin_and_suite_defaults() -> None:
    pm = plugins.make_plugin_manager(autoload=False)
    pm.register(_ThirdParty(), name="redis-storage")
    reg = Registry.build(pm)
    assert reg.storage("redis") is _Redis
    assert "name-server storages: redis" in reg.provided_by(pm.get_plugin("redis-storage"))
    store = _Redis("localhost")
    store["a.x"] = ("PYRO:a@h:1", {"t1", "t2"})
    store["b"] = ("PYRO:b@h:2", None)
    import re

    # the base class's scanning defaults give the same answers as the optimized builtins
    assert store.list_prefix("a.") == {"a.x": "PYRO:a@h:1"}
    assert store.list_regex(re.compile("b")) == {"b": "PYRO:b@h:2"}
    assert store.list_metadata(metadata_all=frozenset({"t1", "t2"})) == {"a.x": "PYRO:a@h:1"}
    assert store.list_metadata(metadata_any=frozenset({"t2", "zz"}), return_metadata=True) == {
        "a.x": ("PYRO:a@h:1", frozenset({"t1", "t2"}))
    }
    assert store.everything() == {"a.x": "PYRO:a@h:1", "b": "PYRO:b@h:2"}
    assert store.remove_items(["b", "nope"]) == 1
    assert repr(store) == "<_Redis redis:localhost>"


def test_duplicate_scheme_refused_loudly() -> None:
    pm = plugins.make_plugin_manager(autoload=False)
    pm.register(_Duplicate(), name="dup")
    with pytest.raises(PluginError, match="duplicate name-server storage scheme 'memory'.*MemoryStorage.*OtherMemory"):
        Registry.build(pm)


def test_non_storage_class_refused() -> None:
    pm = plugins.make_plugin_manager(autoload=False)
    pm.register(_NotAStorage(), name="bad")
    with pytest.raises(PluginError, match="not a Storage subclass"):
        Registry.build(pm)


def test_storage_plugins_can_be_disabled() -> None:
    pm = plugins.make_plugin_manager(disabled="pyroplug.naming.storages.dbm", autoload=False)
    assert "dbm" not in Registry.build(pm).storages


# ---------------------------------------------------------------------- sql specifics
def test_sql_tables_are_pyro4_compatible(tmp_path: Path) -> None:
    """A database written here is read by Pyro4's SqlStorage, and the other way round."""
    from Pyro4.naming_storage import SqlStorage as Pyro4SqlStorage

    path = str(tmp_path / "shared.sqlite")
    ours = SqlStorage(path)
    ours["ours"] = ("PYRO:o@localhost:1", frozenset({"a", "b"}))
    ours.close()
    theirs = Pyro4SqlStorage(path)
    assert theirs["ours"] == ("PYRO:o@localhost:1", {"a", "b"})
    theirs["theirs"] = ("PYRO:t@localhost:2", {"c"})
    ours = SqlStorage(path)
    try:
        assert ours.everything(True) == {
            "ours": ("PYRO:o@localhost:1", frozenset({"a", "b"})),
            "theirs": ("PYRO:t@localhost:2", frozenset({"c"})),
        }
    finally:
        ours.close()
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(pyro_names)")]
        assert columns == ["id", "name", "uri"]
        assert [row[1] for row in db.execute("PRAGMA table_info(pyro_metadata)")] == ["object", "metadata"]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sql_opens_a_pyro4_database(tmp_path: Path) -> None:
    from Pyro4.naming_storage import SqlStorage as Pyro4SqlStorage

    path = str(tmp_path / "pyro4.sqlite")
    theirs = Pyro4SqlStorage(path)
    theirs["n1"] = ("PYRO:x@h:1", {"m"})
    ours = SqlStorage(path)
    try:
        assert ours["n1"] == ("PYRO:x@h:1", frozenset({"m"}))
    finally:
        ours.close()


def test_sql_closed_storage_raises_naming_error(tmp_path: Path) -> None:
    store = SqlStorage(str(tmp_path / "c.sqlite"))
    store.close()
    store.close()
    with pytest.raises(NamingError, match="closed"):
        len(store)
    with pytest.raises(NamingError, match="closed"):
        store["x"] = ("PYRO:x@h:1", None)


def test_sql_two_handles_on_one_file(tmp_path: Path) -> None:
    """Two storages (as two processes would) on one file see each other's committed writes."""
    path = str(tmp_path / "two.sqlite")
    a, b = SqlStorage(path), SqlStorage(path)
    try:
        a["x"] = ("PYRO:x@h:1", frozenset({"t"}))
        assert b["x"] == ("PYRO:x@h:1", frozenset({"t"}))
        b.remove_items(["x"])
        assert "x" not in a
    finally:
        a.close()
        b.close()
    assert os.path.exists(path)
