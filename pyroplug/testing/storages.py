"""Conformance suite for name-server storages: every registered storage must pass these tests.

Subclass :class:`StorageConformance` and provide a ``storage_factory`` fixture: a callable that opens
the storage under test, the same location every time it is called within one test (so persistent
storages can be closed and reopened). pyroplug parametrizes it over every storage in the registry;
a third-party storage (Redis, etcd, ...) subclasses it in its own tests::

    class TestRedisStorage(StorageConformance):
        @pytest.fixture
        def storage_factory(self, redis_url):
            return lambda: RedisStorage(redis_url, Config())
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator

import pytest

from pyroplug.core.constants import NAMESERVER_NAME
from pyroplug.core.errors import NamingError
from pyroplug.core.uri import URI
from pyroplug.naming.nameserver import NameServer
from pyroplug.naming.storage import Storage

__all__ = ["StorageConformance"]

URI1 = "PYRO:obj1@localhost:5001"
URI2 = "PYRO:obj2@localhost:5002"
URI3 = "PYRO:obj3@./u:/tmp/sock3"


class StorageConformance:
    """The behaviour every name-server storage must have (the ``storage_factory`` fixture opens one)."""

    @pytest.fixture
    def storage(self, storage_factory: Callable[[], Storage]) -> Iterator[Storage]:
        store = storage_factory()
        yield store
        store.close()

    @staticmethod
    def meta(store: Storage, *tags: str) -> frozenset[str]:
        """``tags`` when the storage keeps metadata, else nothing."""
        return frozenset(tags) if store.supports_metadata else frozenset()

    # ------------------------------------------------------------------ contract
    def test_declares_scheme(self, storage: Storage) -> None:
        assert isinstance(storage.scheme, str) and storage.scheme and ":" not in storage.scheme
        assert isinstance(storage.supports_metadata, bool) and isinstance(storage.persistent, bool)

    def test_empty(self, storage: Storage) -> None:
        assert len(storage) == 0
        assert list(storage) == []
        assert "x" not in storage
        assert storage.everything() == {} and storage.everything(True) == {}
        with pytest.raises(KeyError):
            storage["x"]
        with pytest.raises(KeyError):
            del storage["x"]

    def test_set_get_replace_delete(self, storage: Storage) -> None:
        storage["a"] = (URI1, self.meta(storage, "m1", "m2"))
        storage["b"] = (URI2, None)
        assert len(storage) == 2 and sorted(storage) == ["a", "b"]
        assert "a" in storage and "c" not in storage
        assert storage["a"] == (URI1, self.meta(storage, "m1", "m2"))
        assert storage["b"] == (URI2, frozenset())
        assert isinstance(storage["a"][1], frozenset)
        storage["a"] = (URI3, self.meta(storage, "m3"))
        assert storage["a"] == (URI3, self.meta(storage, "m3")) and len(storage) == 2
        storage["a"] = (URI1, None)
        assert storage["a"] == (URI1, frozenset())
        del storage["a"]
        assert "a" not in storage and len(storage) == 1
        with pytest.raises(KeyError):
            storage["a"]

    def test_text_is_kept_exactly(self, storage: Storage) -> None:
        names = ["ünïcode.名前", "with space", "per%cent_under", "UPPER.lower", "a" * 500]
        for i, name in enumerate(names):
            storage[name] = (f"PYRO:obj{i}@hôst:{5000 + i}", None)
        for i, name in enumerate(names):
            assert storage[name][0] == f"PYRO:obj{i}@hôst:{5000 + i}"
        assert sorted(storage) == sorted(names)

    def test_everything(self, storage: Storage) -> None:
        storage["a"] = (URI1, self.meta(storage, "m1"))
        storage["b"] = (URI2, None)
        assert storage.everything() == {"a": URI1, "b": URI2}
        assert storage.everything(return_metadata=True) == {"a": (URI1, self.meta(storage, "m1")), "b": (URI2, frozenset())}

    def test_list_prefix_is_literal_and_case_sensitive(self, storage: Storage) -> None:
        for name in ("app.one", "app.two", "App.three", "apple", "ap%x", "ap_y", "other.app"):
            storage[name] = (URI1, None)
        assert sorted(storage.list_prefix("app.")) == ["app.one", "app.two"]
        assert sorted(storage.list_prefix("app")) == ["app.one", "app.two", "apple"]
        assert sorted(storage.list_prefix("ap%")) == ["ap%x"]
        assert sorted(storage.list_prefix("ap_")) == ["ap_y"]
        assert storage.list_prefix("zzz") == {}
        assert storage.list_prefix("app.one", True) == {"app.one": (URI1, frozenset())}

    def test_list_regex_matches_at_start(self, storage: Storage) -> None:
        for name in ("app.one", "app.two", "my.app.x", "apple"):
            storage[name] = (URI2, None)
        assert sorted(storage.list_regex(re.compile(r"app\.\w+"))) == ["app.one", "app.two"]
        assert sorted(storage.list_regex(re.compile(r"app"))) == ["app.one", "app.two", "apple"]
        assert sorted(storage.list_regex(re.compile(r".*app"))) == ["app.one", "app.two", "apple", "my.app.x"]
        assert storage.list_regex(re.compile(r"app\.one$"), True) == {"app.one": (URI2, frozenset())}

    def test_remove_items(self, storage: Storage) -> None:
        for name in ("a", "b", "c"):
            storage[name] = (URI1, self.meta(storage, "tag"))
        assert storage.remove_items(["a", "c", "missing"]) == 2
        assert sorted(storage) == ["b"]
        assert storage.remove_items([]) == 0

    def test_many_names(self, storage: Storage) -> None:
        for i in range(500):
            storage[f"name{i:04d}"] = (f"PYRO:o{i}@localhost:{1000 + i}", None)
        assert len(storage) == 500
        assert len(storage.list_prefix("name04")) == 100
        assert storage["name0499"][0] == "PYRO:o499@localhost:1499"

    # ------------------------------------------------------------------ metadata
    def test_metadata_search(self, storage: Storage) -> None:
        if not storage.supports_metadata:
            pytest.skip("this storage keeps no metadata (see test_metadata_refused)")
        storage["a"] = (URI1, frozenset({"x", "y"}))
        storage["b"] = (URI2, frozenset({"y", "z"}))
        storage["c"] = (URI3, None)
        assert sorted(storage.list_metadata(metadata_all=frozenset({"y"}))) == ["a", "b"]
        assert sorted(storage.list_metadata(metadata_all=frozenset({"x", "y"}))) == ["a"]
        assert storage.list_metadata(metadata_all=frozenset({"x", "z"})) == {}
        assert sorted(storage.list_metadata(metadata_any=frozenset({"x", "z"}))) == ["a", "b"]
        assert storage.list_metadata(metadata_any=frozenset({"nope"})) == {}
        assert storage.list_metadata(metadata_all=frozenset({"z"}), return_metadata=True) == {"b": (URI2, frozenset({"y", "z"}))}
        assert storage.list_metadata(metadata_any=frozenset({"x"})) == {"a": URI1}
        storage["a"] = (URI1, frozenset({"q"}))  # replaced metadata is no longer found
        assert storage.list_metadata(metadata_any=frozenset({"x"})) == {}
        del storage["a"]
        assert storage.list_metadata(metadata_any=frozenset({"q"})) == {}

    def test_metadata_refused(self, storage: Storage) -> None:
        if storage.supports_metadata:
            pytest.skip("this storage keeps metadata")
        with pytest.raises(NamingError, match="metadata"):
            storage["a"] = (URI1, frozenset({"x"}))
        assert "a" not in storage
        storage["a"] = (URI1, frozenset())
        with pytest.raises(NamingError, match="metadata"):
            storage.list_metadata(metadata_any=frozenset({"x"}))

    # ------------------------------------------------------------------ persistence
    def test_persistence(self, storage_factory: Callable[[], Storage]) -> None:
        first = storage_factory()
        if not first.persistent:
            first.close()
            pytest.skip("volatile storage")
        first["kept"] = (URI1, self.meta(first, "m1", "m2"))
        first["gone"] = (URI2, None)
        del first["gone"]
        first.close()
        second = storage_factory()
        try:
            assert dict(second.everything(True)) == {"kept": (URI1, self.meta(second, "m1", "m2"))}
        finally:
            second.close()

    # ------------------------------------------------------------------ through the name server
    def test_nameserver_semantics(self, storage: Storage) -> None:
        ns = NameServer(storage)
        ns.register(NAMESERVER_NAME, "PYRO:Pyro.NameServer@localhost:9090")
        ns.register("app.a", URI1, metadata=self.meta(storage, "tag") or None)
        ns.register("app.b", URI(URI2))
        assert isinstance(ns.lookup("app.b"), URI) and str(ns.lookup("app.b")) == URI2
        assert ns.count() == 3
        with pytest.raises(NamingError, match="already registered"):
            ns.register("app.a", URI2, safe=True)
        with pytest.raises(NamingError, match="unknown name"):
            ns.lookup("nope")
        assert ns.list(prefix="app.") == {"app.a": URI1, "app.b": URI2}
        assert ns.list(regex=r"app\.b") == {"app.b": URI2}
        with pytest.raises(NamingError, match="invalid regex"):
            ns.list(regex="(")
        if storage.supports_metadata:
            assert ns.list(metadata_all=["tag"], return_metadata=True) == {"app.a": (URI1, ["tag"])}
            assert ns.lookup("app.a", return_metadata=True) == (URI(URI1), ["tag"])
        else:
            with pytest.raises(NamingError, match="metadata"):
                ns.register("app.c", URI3, metadata=["tag"])
        assert ns.remove(prefix="") == 0
        assert ns.remove(regex=".*") == 2
        assert ns.remove(NAMESERVER_NAME) == 0
        assert list(ns.list()) == [NAMESERVER_NAME]

    def test_concurrent_writers_through_nameserver(self, storage: Storage) -> None:
        ns = NameServer(storage)
        failures: list[BaseException] = []

        def writer(n: int) -> None:
            try:
                for i in range(50):
                    ns.register(f"t{n}.{i}", f"PYRO:o{n}x{i}@localhost:{2000 + i}", safe=True)
                    assert str(ns.lookup(f"t{n}.{i}")) == f"PYRO:o{n}x{i}@localhost:{2000 + i}"
                ns.remove(prefix=f"t{n}.4")
            except BaseException as exc:  # collected and asserted below
                failures.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not failures
        assert ns.count() == 8 * 39  # t{n}.4 and t{n}.40-49 removed
