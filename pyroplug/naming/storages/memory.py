"""The ``memory`` name-server storage: a dict, forgotten when the name server stops (the default)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

from pyroplug.core.hookspec import hookimpl
from pyroplug.naming.storage import Listing, Registration, Storage

if TYPE_CHECKING:
    from pyroplug.core.config import Config

__all__ = ["MemoryStorage", "pyroplug_ns_storages"]


class MemoryStorage(Storage):
    """Registrations in a dict; fast, volatile. The storage string is just ``memory``."""

    scheme: ClassVar[str] = "memory"

    def __init__(self, location: str = "", config: Config | None = None) -> None:
        if location:
            raise ValueError(f"the memory storage takes no location, got 'memory:{location}'")
        super().__init__(location, config)
        self._data: dict[str, Registration] = {}

    def __getitem__(self, name: str) -> Registration:
        return self._data[name]

    def __setitem__(self, name: str, value: tuple[str, Iterable[str] | None]) -> None:  # type: ignore[override]
        uri, metadata = value
        self._data[name] = (uri, frozenset(metadata or ()))

    def __delitem__(self, name: str) -> None:
        del self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def everything(self, return_metadata: bool = False) -> Listing:
        if return_metadata:
            return dict(self._data)
        return {name: reg[0] for name, reg in self._data.items()}

    def list_prefix(self, prefix: str, return_metadata: bool = False) -> Listing:
        if return_metadata:
            return {n: reg for n, reg in self._data.items() if n.startswith(prefix)}
        return {n: reg[0] for n, reg in self._data.items() if n.startswith(prefix)}

    def close(self) -> None:
        self._data.clear()


@hookimpl
def pyroplug_ns_storages() -> Sequence[type[Storage]]:
    """The memory storage."""
    return [MemoryStorage]
