"""The ``sql:<file>`` name-server storage: SQLite, Pyro4-compatible tables, durable acknowledged writes.

The tables are Pyro4's: ``pyro_names(id, name unique, uri)`` and ``pyro_metadata(object, metadata)``,
so a database written by Pyro4's name server opens here and the other way round. The database runs in
WAL mode with ``synchronous=NORMAL``: a registration is committed before the call returns, and a
committed transaction survives the name-server process being killed (SIGKILL); only an operating
system crash or power loss may lose the last transactions (set ``synchronous = "FULL"`` on a subclass
to survive those too, at the cost of an fsync per write). One connection is shared by all threads of
the name server, behind a lock; other processes may use the same file (a busy timeout waits for them).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pyroplug.core.errors import NamingError
from pyroplug.core.hookspec import hookimpl
from pyroplug.naming.storage import Listing, Registration, Storage

try:
    import sqlite3
except ImportError:  # pragma: no cover - Python built without sqlite
    sqlite3 = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from pyroplug.core.config import Config

__all__ = ["SqlStorage", "pyroplug_ns_storages"]

log = logging.getLogger(__name__)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS pyro_names
       (id integer PRIMARY KEY, name nvarchar NOT NULL UNIQUE, uri nvarchar NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS pyro_metadata
       (object integer NOT NULL, metadata nvarchar NOT NULL, FOREIGN KEY(object) REFERENCES pyro_names(id))""",
    "CREATE INDEX IF NOT EXISTS pyro_metadata_object ON pyro_metadata(object)",
    "CREATE INDEX IF NOT EXISTS pyro_metadata_value ON pyro_metadata(metadata)",
)
_ALL_ROWS = "SELECT n.name, n.uri, m.metadata FROM pyro_names n LEFT JOIN pyro_metadata m ON m.object = n.id"


class SqlStorage(Storage):
    """Registrations in an SQLite database file (``sql:/path/to/names.sqlite``)."""

    scheme: ClassVar[str] = "sql"
    persistent: ClassVar[bool] = True
    #: SQLite's synchronous setting: NORMAL survives a killed process, FULL also an OS crash
    synchronous: ClassVar[str] = "NORMAL"
    #: seconds to wait for another process's write lock
    busy_timeout: ClassVar[float] = 10.0

    def __init__(self, location: str = "", config: Config | None = None) -> None:
        if sqlite3 is None:  # pragma: no cover
            raise NamingError("the sql storage needs Python's sqlite3 module, which is not available")
        if not location:
            raise ValueError("the sql storage needs a database file: sql:<file>")
        if location == ":memory:" or location.startswith("file::memory:"):
            raise ValueError("an in-memory sqlite database is not supported; use the memory storage")
        super().__init__(location, config)
        self._lock = threading.RLock()
        try:
            db = sqlite3.connect(location, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise NamingError(f"cannot open sqlite database {location!r}: {exc}") from exc
        self._db: Any = db
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("PRAGMA foreign_keys=ON")
            with self._transaction("create schema"):
                for statement in _SCHEMA:
                    db.execute(statement)
        except BaseException:
            db.close()
            raise
        log.debug("sql storage %s opened with %d names", location, len(self))

    # ------------------------------------------------------------------ helpers
    def _transaction(self, doing: str) -> _Transaction:
        return _Transaction(self, doing)

    def _query(self, doing: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            db = self._check_open()
            try:
                return db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise NamingError(f"sqlite error in {doing}: {exc}") from exc

    def _check_open(self) -> Any:
        db = self._db
        if db is None:
            raise NamingError("the sql storage is closed")
        return db

    @staticmethod
    def _group(rows: Iterable[tuple[str, str, str | None]], return_metadata: bool) -> Listing:
        if not return_metadata:
            return {name: uri for name, uri, _meta in rows}
        grouped: dict[str, tuple[str, set[str]]] = {}
        for name, uri, meta in rows:
            entry = grouped.get(name)
            if entry is None:
                entry = grouped[name] = (uri, set())
            if meta is not None:
                entry[1].add(meta)
        return {name: (uri, frozenset(meta)) for name, (uri, meta) in grouped.items()}

    # ------------------------------------------------------------------ mapping
    def __getitem__(self, name: str) -> Registration:
        rows = self._query("lookup", _ALL_ROWS + " WHERE n.name = ?", (name,))
        if not rows:
            raise KeyError(name)
        return rows[0][1], frozenset(r[2] for r in rows if r[2] is not None)

    def __setitem__(self, name: str, value: tuple[str, Iterable[str] | None]) -> None:  # type: ignore[override]
        uri, metadata = value
        meta = sorted(set(metadata or ()))
        with self._transaction("register") as db:
            row = db.execute("SELECT id FROM pyro_names WHERE name = ?", (name,)).fetchone()
            if row is None:
                dbid = db.execute("INSERT INTO pyro_names(name, uri) VALUES (?, ?)", (name, uri)).lastrowid
            else:
                dbid = row[0]
                db.execute("UPDATE pyro_names SET uri = ? WHERE id = ?", (uri, dbid))
                db.execute("DELETE FROM pyro_metadata WHERE object = ?", (dbid,))
            db.executemany("INSERT INTO pyro_metadata(object, metadata) VALUES (?, ?)", [(dbid, m) for m in meta])

    def __delitem__(self, name: str) -> None:
        if not self.remove_items([name]):
            raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter([row[0] for row in self._query("iter", "SELECT name FROM pyro_names")])

    def __len__(self) -> int:
        return int(self._query("count", "SELECT COUNT(*) FROM pyro_names")[0][0])

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return bool(self._query("contains", "SELECT 1 FROM pyro_names WHERE name = ? LIMIT 1", (name,)))

    # ------------------------------------------------------------------ fast paths
    def everything(self, return_metadata: bool = False) -> Listing:
        if not return_metadata:
            return dict(self._query("everything", "SELECT name, uri FROM pyro_names"))
        return self._group(self._query("everything", _ALL_ROWS), True)

    def list_prefix(self, prefix: str, return_metadata: bool = False) -> Listing:
        # substr, not LIKE: LIKE is case-insensitive and treats % and _ as wildcards
        if not return_metadata:
            rows = self._query("list_prefix", "SELECT name, uri FROM pyro_names WHERE substr(name, 1, ?) = ?",
                               (len(prefix), prefix))
            return dict(rows)
        rows = self._query("list_prefix", _ALL_ROWS + " WHERE substr(n.name, 1, ?) = ?", (len(prefix), prefix))
        return self._group(rows, True)

    def list_regex(self, pattern: re.Pattern[str], return_metadata: bool = False) -> Listing:
        return {k: v for k, v in self.everything(return_metadata).items() if pattern.match(k)}

    def list_metadata(
        self,
        metadata_all: frozenset[str] | None = None,
        metadata_any: frozenset[str] | None = None,
        return_metadata: bool = False,
    ) -> Listing:
        wanted = sorted(metadata_all if metadata_all is not None else metadata_any or ())
        if not wanted:  # every registration has all of no tags, and none has any of them
            return self.everything(return_metadata) if metadata_all is not None else {}
        marks = ",".join("?" * len(wanted))
        if metadata_all is not None:
            ids = (f"SELECT object FROM pyro_metadata WHERE metadata IN ({marks}) "
                   "GROUP BY object HAVING COUNT(DISTINCT metadata) = ?")
            params: list[Any] = [*wanted, len(wanted)]
        else:
            ids = f"SELECT object FROM pyro_metadata WHERE metadata IN ({marks})"
            params = list(wanted)
        if not return_metadata:
            return dict(self._query("list_metadata", f"SELECT name, uri FROM pyro_names WHERE id IN ({ids})", params))
        rows = self._query("list_metadata", _ALL_ROWS + f" WHERE n.id IN ({ids})", params)
        return self._group(rows, True)

    def remove_items(self, names: Iterable[str]) -> int:
        removed = 0
        with self._transaction("remove") as db:
            for name in names:
                row = db.execute("SELECT id FROM pyro_names WHERE name = ?", (name,)).fetchone()
                if row is not None:
                    db.execute("DELETE FROM pyro_metadata WHERE object = ?", (row[0],))
                    db.execute("DELETE FROM pyro_names WHERE id = ?", (row[0],))
                    removed += 1
        return removed

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                try:
                    db.close()
                except sqlite3.Error as exc:  # pragma: no cover - nothing left to do about it
                    log.warning("closing sql storage %s: %s", self.location, exc)


class _Transaction:
    """``with``: the storage lock, BEGIN IMMEDIATE, then COMMIT (or ROLLBACK on an error)."""

    def __init__(self, storage: SqlStorage, doing: str) -> None:
        self.storage = storage
        self.doing = doing

    def __enter__(self) -> Any:
        self.storage._lock.acquire()
        try:
            db = self.storage._check_open()
            db.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            self.storage._lock.release()
            if isinstance(exc, sqlite3.Error):
                raise NamingError(f"sqlite error in {self.doing}: {exc}") from exc
            raise
        self.db = db
        return db

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc_type is None:
                try:
                    self.db.execute("COMMIT")
                except sqlite3.Error as problem:
                    self._rollback()
                    raise NamingError(f"sqlite error in {self.doing}: {problem}") from problem
            else:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise NamingError(f"sqlite error in {self.doing}: {exc}") from exc
        finally:
            self.storage._lock.release()

    def _rollback(self) -> None:
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:  # no transaction left to roll back
            pass


@hookimpl
def pyroplug_ns_storages() -> Sequence[type[Storage]]:
    """The SQLite storage (none when Python lacks sqlite3)."""
    return [SqlStorage] if sqlite3 is not None else []
