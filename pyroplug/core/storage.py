"""The name-server storage contract: a mapping of name -> (uri text, metadata), plus optional fast paths."""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, ClassVar, Union

if TYPE_CHECKING:
    from pyroplug.core.config import Config

__all__ = ["Listing", "Registration", "Storage", "split_storage_spec"]

#: one registration: the URI as text and its metadata strings
Registration = tuple[str, frozenset[str]]
#: what the list methods return: name -> uri text, or name -> Registration with ``return_metadata``
Listing = dict[str, Union[str, Registration]]


def split_storage_spec(spec: str | None) -> tuple[str, str]:
    """Split a storage string such as ``sql:/var/ns.sqlite`` into (scheme, location); None is ``memory``."""
    spec = (spec or "memory").strip()
    scheme, _, location = spec.partition(":")
    return scheme.strip().lower(), location


class Storage(MutableMapping[str, Registration]):
    """Base class of name-server storages: ``storage[name] = (uri, metadata)``.

    Required: the five mapping methods ``__getitem__`` (KeyError for unknown names), ``__setitem__``
    (replaces an existing registration, metadata included), ``__delitem__``, ``__iter__`` (the names)
    and ``__len__``. Each write must be durable when it returns if the storage is persistent.

    Optional, with correct but scanning defaults: :meth:`list_prefix`, :meth:`list_regex`,
    :meth:`list_metadata`, :meth:`everything`, :meth:`remove_items` and :meth:`close`. A storage
    overrides them when it can answer faster (an index, a query).

    The name server serialises every call with one lock, so a storage only needs its own locking
    when it shares state with other processes or threads outside the name server.
    A subclass sets ``scheme`` (the storage string prefix that selects it) and is constructed with the
    location part of the storage string and a Config.
    """

    #: the storage-string prefix that selects this class: ``memory``, ``sql``, ``dbm``, ...
    scheme: ClassVar[str]
    #: False when the storage cannot keep metadata; the name server then refuses metadata clearly
    supports_metadata: ClassVar[bool] = True
    #: True when registrations survive a restart with the same location
    persistent: ClassVar[bool] = False

    def __init__(self, location: str = "", config: Config | None = None) -> None:
        self.location = location
        self.config = config

    # ------------------------------------------------------------------ required
    @abstractmethod
    def __getitem__(self, name: str) -> Registration:
        """(uri, metadata) of ``name``; KeyError when it is not registered."""

    @abstractmethod
    def __setitem__(self, name: str, value: tuple[str, Iterable[str] | None]) -> None:  # type: ignore[override]
        """Register (or re-register) ``name`` as ``(uri, metadata)``; metadata may be None (empty)."""

    @abstractmethod
    def __delitem__(self, name: str) -> None:
        """Remove ``name``; KeyError when it is not registered."""

    @abstractmethod
    def __iter__(self) -> Iterator[str]:
        """The registered names (a snapshot: the caller may modify the storage while iterating)."""

    @abstractmethod
    def __len__(self) -> int:
        """The number of registrations."""

    # ------------------------------------------------------------------ optional fast paths
    def everything(self, return_metadata: bool = False) -> Listing:
        """Every registration: name -> uri, or name -> (uri, metadata)."""
        result: Listing = {}
        for name in list(self):
            try:
                uri, meta = self[name]
            except KeyError:
                continue
            result[name] = (uri, meta) if return_metadata else uri
        return result

    def list_prefix(self, prefix: str, return_metadata: bool = False) -> Listing:
        """The registrations whose name starts with ``prefix``."""
        return {k: v for k, v in self.everything(return_metadata).items() if k.startswith(prefix)}

    def list_regex(self, pattern: re.Pattern[str], return_metadata: bool = False) -> Listing:
        """The registrations whose name matches ``pattern`` at its start (``re.match``, as Pyro4)."""
        return {k: v for k, v in self.everything(return_metadata).items() if pattern.match(k)}

    def list_metadata(
        self,
        metadata_all: frozenset[str] | None = None,
        metadata_any: frozenset[str] | None = None,
        return_metadata: bool = False,
    ) -> Listing:
        """The registrations having all of ``metadata_all`` (or any of ``metadata_any``) as metadata."""
        result: Listing = {}
        for name in list(self):
            try:
                uri, meta = self[name]
            except KeyError:
                continue
            if metadata_all is not None and not metadata_all <= meta:
                continue
            if metadata_any is not None and not metadata_any & meta:
                continue
            result[name] = (uri, meta) if return_metadata else uri
        return result

    def remove_items(self, names: Iterable[str]) -> int:
        """Remove every name in ``names`` that is registered; returns how many were removed."""
        removed = 0
        for name in names:
            try:
                del self[name]
            except KeyError:
                continue
            removed += 1
        return removed

    def close(self) -> None:
        """Release resources (files, connections). The storage is unusable afterwards."""

    def __repr__(self) -> str:
        where = f":{self.location}" if self.location else ""
        return f"<{type(self).__name__} {self.scheme}{where}>"
