"""The ``dbm:<file>`` name-server storage: Python's dbm files, without metadata (as Pyro4's)."""

from __future__ import annotations

import dbm
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pyroplug.core.errors import NamingError
from pyroplug.core.hookspec import hookimpl
from pyroplug.naming.storage import Listing, Registration, Storage

if TYPE_CHECKING:
    from pyroplug.core.config import Config

__all__ = ["DbmStorage", "pyroplug_ns_storages"]

log = logging.getLogger(__name__)

_EMPTY: frozenset[str] = frozenset()


class DbmStorage(Storage):
    """Registrations in a dbm file (``dbm:/path/names``), name and URI as UTF-8.

    dbm keeps one string per key, so this storage cannot keep metadata: registering with metadata
    raises NamingError (Pyro4 dropped it silently), and lookups report empty metadata. The file is
    kept open and synced after every write; it must not be shared with another process.
    """

    scheme: ClassVar[str] = "dbm"
    supports_metadata: ClassVar[bool] = False
    persistent: ClassVar[bool] = True

    def __init__(self, location: str = "", config: Config | None = None) -> None:
        if not location:
            raise ValueError("the dbm storage needs a file name: dbm:<file>")
        super().__init__(location, config)
        self._lock = threading.RLock()
        try:
            self._db: Any = dbm.open(location, "c", 0o600)
        except dbm.error as exc:
            raise NamingError(f"cannot open dbm file {location!r}: {exc}") from exc

    def _open(self) -> Any:
        if self._db is None:
            raise NamingError("the dbm storage is closed")
        return self._db

    def _sync(self, db: Any) -> None:
        sync = getattr(db, "sync", None)
        if sync is not None:
            sync()

    def __getitem__(self, name: str) -> Registration:
        with self._lock:
            try:
                return self._open()[name.encode("utf-8")].decode("utf-8"), _EMPTY
            except KeyError:
                raise KeyError(name) from None

    def __setitem__(self, name: str, value: tuple[str, Iterable[str] | None]) -> None:  # type: ignore[override]
        uri, metadata = value
        if metadata:
            raise NamingError("the dbm storage does not support metadata; use the sql storage for metadata")
        with self._lock:
            db = self._open()
            db[name.encode("utf-8")] = uri.encode("utf-8")
            self._sync(db)

    def __delitem__(self, name: str) -> None:
        with self._lock:
            db = self._open()
            try:
                del db[name.encode("utf-8")]
            except KeyError:
                raise KeyError(name) from None
            self._sync(db)

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter([key.decode("utf-8") for key in self._open().keys()])

    def __len__(self) -> int:
        with self._lock:
            return len(self._open())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        with self._lock:
            return name.encode("utf-8") in self._open()

    def everything(self, return_metadata: bool = False) -> Listing:
        with self._lock:
            db = self._open()
            result: Listing = {}
            for key in db.keys():
                uri = db[key].decode("utf-8")
                result[key.decode("utf-8")] = (uri, _EMPTY) if return_metadata else uri
            return result

    def list_metadata(
        self,
        metadata_all: frozenset[str] | None = None,
        metadata_any: frozenset[str] | None = None,
        return_metadata: bool = False,
    ) -> Listing:
        raise NamingError("the dbm storage does not support metadata; use the sql storage for metadata")

    def remove_items(self, names: Iterable[str]) -> int:
        removed = 0
        with self._lock:
            db = self._open()
            for name in names:
                try:
                    del db[name.encode("utf-8")]
                except KeyError:
                    continue
                removed += 1
            if removed:
                self._sync(db)
        return removed

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()


@hookimpl
def pyroplug_ns_storages() -> Sequence[type[Storage]]:
    """The dbm storage."""
    return [DbmStorage]
