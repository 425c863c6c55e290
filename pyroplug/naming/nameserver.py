"""The name server object (``Pyro.NameServer``): a flat name -> URI map with metadata, over a Storage."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

from pyroplug.core.constants import NAMESERVER_NAME
from pyroplug.core.errors import NamingError, PyroError
from pyroplug.core.expose import expose
from pyroplug.core.uri import URI
from pyroplug.naming.storage import Listing, Storage

__all__ = ["NameServer", "type_meta"]

log = logging.getLogger(__name__)

_ONE_FILTER = "you can only filter on one thing at a time"


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError("name must be a str")
    if not name:
        raise NamingError("invalid name: a name must not be empty")
    return name


def _check_metadata(metadata: Any, what: str = "metadata", strict: bool = True) -> frozenset[Any]:
    """Metadata as a frozenset: None/empty is empty; a bare str or a non-iterable is a TypeError."""
    if isinstance(metadata, (str, bytes)):
        raise TypeError(f"{what} should not be a str, but another iterable (set, list, etc)")
    if not metadata:
        return frozenset()
    try:
        items = frozenset(metadata)
    except TypeError:
        raise TypeError(f"{what} should be an iterable of str (set, list, etc), not {type(metadata).__name__}") from None
    if strict:
        for item in items:
            if not isinstance(item, str):
                raise TypeError(f"{what} items must be str, not {type(item).__name__}: {item!r}")
    return items


def _uri_text(uri: Any) -> str:
    if isinstance(uri, URI):
        return uri.asString()
    if not isinstance(uri, str):
        raise TypeError("only URIs or strings can be registered")
    try:
        URI(uri)
    except PyroError as exc:
        raise NamingError(f"invalid uri {uri!r}: {exc}") from None
    return uri


@expose
class NameServer:
    """The name server: register names for URIs (with metadata tags), look them up, list and remove them.

    Every method holds one lock, so the object is safe to call from the daemon's worker threads; the
    registrations live in ``storage`` (a :class:`~pyroplug.naming.storage.Storage`, memory by default).
    Return values and errors are Pyro4 4.82's: :meth:`lookup` returns a URI object, :meth:`list`
    returns URI strings, unknown names and duplicates raise NamingError.
    """

    def __init__(self, storageProvider: Storage | None = None) -> None:  # noqa: N803 - Pyro4 API
        if storageProvider is None:
            from pyroplug.naming.storages.memory import MemoryStorage

            storageProvider = MemoryStorage()
        self.storage = storageProvider
        self.lock = threading.RLock()

    def count(self) -> int:
        """The number of registrations (the name server's own included)."""
        with self.lock:
            return len(self.storage)

    def lookup(self, name: str, return_metadata: bool = False) -> URI | tuple[URI, list[str]]:
        """The URI registered for ``name``, or (URI, metadata list); NamingError for an unknown name."""
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        with self.lock:
            try:
                uri, metadata = self.storage[name]
            except KeyError:
                raise NamingError("unknown name: " + name) from None
        try:
            found = URI(uri)
        except PyroError as exc:
            raise NamingError(f"invalid uri stored for name {name}: {exc}") from None
        if return_metadata:
            return found, sorted(metadata)
        return found

    def register(self, name: str, uri: URI | str, safe: bool = False, metadata: Iterable[str] | None = None) -> None:
        """Register ``name`` for ``uri`` (a URI or its text, stored as text) with optional metadata tags.

        ``safe=True`` refuses a name that is already registered; otherwise the registration is
        replaced. ``metadata`` is an iterable of str (a bare str is refused).
        """
        text = _uri_text(uri)
        _check_name(name)
        meta = _check_metadata(metadata)
        if meta and not self.storage.supports_metadata:
            raise NamingError(f"the {self.storage.scheme} storage does not support metadata")
        with self.lock:
            if safe and name in self.storage:
                raise NamingError("name already registered: " + name)
            self.storage[name] = (text, meta)
        log.debug("registered %s -> %s", name, text)

    def set_metadata(self, name: str, metadata: Iterable[str] | None) -> None:
        """Replace the metadata of an existing registration (None or empty clears it)."""
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        meta = _check_metadata(metadata)
        if meta and not self.storage.supports_metadata:
            raise NamingError(f"the {self.storage.scheme} storage does not support metadata")
        with self.lock:
            try:
                uri, _old = self.storage[name]
            except KeyError:
                raise NamingError("unknown name: " + name) from None
            self.storage[name] = (uri, meta)

    def remove(self, name: str | None = None, prefix: str | None = None, regex: str | None = None) -> int:
        """Remove one name, or every name with a prefix or matching a regex; returns how many.

        The name server's own registration is never removed.
        """
        if name is not None and not isinstance(name, str):
            raise TypeError("name must be a str")
        with self.lock:
            if name and name != NAMESERVER_NAME and name in self.storage:
                del self.storage[name]
                return 1
            if prefix or regex:
                found = self.list(prefix=prefix) if prefix else self.list(regex=regex)
                found.pop(NAMESERVER_NAME, None)
                self.storage.remove_items(list(found))
                return len(found)
        return 0

    def list(
        self,
        prefix: str | None = None,
        regex: str | None = None,
        metadata_all: Iterable[str] | None = None,
        metadata_any: Iterable[str] | None = None,
        return_metadata: bool = False,
    ) -> dict[str, Any]:
        """The registrations as name -> URI string (or name -> (URI string, metadata list)).

        Filter by ``prefix``, by ``regex`` (matched at the start of the name), by names having all of
        ``metadata_all`` or by names having any of ``metadata_any``; one filter at a time.
        """
        if sum(1 for f in (prefix, regex, metadata_all, metadata_any) if f is not None) > 1:
            raise ValueError(_ONE_FILTER)
        result: Listing
        with self.lock:
            if prefix:
                if not isinstance(prefix, str):
                    raise TypeError("prefix must be a str")
                result = self.storage.list_prefix(prefix, return_metadata)
            elif regex:
                if not isinstance(regex, str):
                    raise TypeError("regex must be a str")
                try:
                    pattern = re.compile(regex)
                except re.error as exc:
                    raise NamingError("invalid regex: " + str(exc)) from None
                result = self.storage.list_regex(pattern, return_metadata)
            elif metadata_all:
                wanted = _check_metadata(metadata_all, "metadata_all", strict=False)
                result = self.storage.list_metadata(metadata_all=wanted, return_metadata=return_metadata)
            elif metadata_any:
                wanted = _check_metadata(metadata_any, "metadata_any", strict=False)
                result = self.storage.list_metadata(metadata_any=wanted, return_metadata=return_metadata)
            else:
                result = self.storage.everything(return_metadata)
        if return_metadata:
            return {name: (entry[0], sorted(entry[1])) for name, entry in result.items()}
        return result

    def ping(self) -> None:
        """Do nothing: lets a client check that the name server answers."""

    def __repr__(self) -> str:
        return f"<pyroplug.naming.NameServer storage={self.storage!r}>"


def type_meta(class_or_object: Any, prefix: str = "class:") -> set[str]:
    """Metadata tags naming a class and its bases (``class:module.Name``), builtins excluded.

    Useful as name-server metadata: ``ns.register(name, uri, metadata=type_meta(obj))``.
    """
    cls = class_or_object if isinstance(class_or_object, type) else type(class_or_object)
    return {f"{prefix}{c.__module__}.{c.__name__}" for c in cls.__mro__ if c.__module__ not in ("builtins", "__builtin__")}
