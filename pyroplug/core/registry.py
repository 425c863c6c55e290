"""The frozen Registry: plugin classes by key, built once from the plugin manager.

Only this module calls ``pm.hook``. Lookups are plain dict reads, so worker threads use a Registry
without locks; a new Registry is built when the plugins change (:func:`invalidate`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pyroplug.core.errors import PluginError

if TYPE_CHECKING:
    import pluggy

    from pyroplug.core.serializer import Serializer
    from pyroplug.core.servertype import ServerType
    from pyroplug.core.storage import Storage
    from pyroplug.core.transport import Transport

__all__ = ["EXTRAS", "Registry", "get_registry", "invalidate"]

#: builtin plugins whose optional dependency comes with an extra: name -> extra
EXTRAS: Mapping[str, str] = MappingProxyType({"dill": "dill", "msgpack": "msgpack"})
#: wire ids of those builtins: serializer id -> name
_EXTRA_IDS: Mapping[int, str] = MappingProxyType({5: "dill", 6: "msgpack"})

#: Pyro4's serializer ids are 1 (serpent) .. 7 (cloudpickle); a plugin may take one over only when the
#: builtin with that id is disabled (duplicates are refused). Ids 8..31 are reserved; third parties use 32..255.
PYRO4_IDS = 7
THIRD_PARTY_IDS = 32
_BUILTIN_SERIALIZERS = "pyroplug.plugins.serializers."

_lock = threading.Lock()
_current: Registry | None = None


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _index(kind: str, key_attr: str, pairs: Iterable[tuple[object, type]]) -> dict[Any, type]:
    """Map each class by its ``key_attr``; PluginError for a missing key or a key claimed twice."""
    table: dict[Any, type] = {}
    for _plugin, cls in pairs:
        key = getattr(cls, key_attr, None)
        if key is None:
            raise PluginError(f"{kind} class {_qualname(cls)} does not set '{key_attr}'")
        other = table.get(key)
        if other is not None and other is not cls:
            raise PluginError(f"duplicate {kind} {key_attr} {key!r}: {_qualname(other)} and {_qualname(cls)}")
        table[key] = cls
    return table


def _results(pm: pluggy.PluginManager, hookname: str, base: type) -> list[tuple[object, type]]:
    """(plugin, class) for every class returned by every implementation of one hook.

    Each implementation is called directly, so the registry knows which plugin provided what.
    PluginError when an implementation fails or returns something that is not a ``base`` subclass.
    """
    pairs = []
    for impl in getattr(pm.hook, hookname).get_hookimpls():
        try:
            provided = impl.function() or ()
            classes = list(provided)
        except Exception as exc:
            raise PluginError(f"plugin {impl.plugin_name!r} failed in {hookname}(): {exc!r}") from exc
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(
                    f"plugin {impl.plugin_name!r} returned {cls!r} from {hookname}(), "
                    f"which is not a {base.__name__} subclass"
                )
            pairs.append((impl.plugin, cls))
    return pairs


@dataclass(frozen=True)
class Registry:
    """Plugin classes by key. Build it with :meth:`build`; get the shared one with :func:`get_registry`."""

    serializers: Mapping[str, type[Serializer]]
    serializers_by_id: Mapping[int, type[Serializer]]
    server_types: Mapping[str, type[ServerType]]
    transports: Mapping[str, type[Transport]]
    origins: Mapping[type, object]
    #: name-server storages by scheme (``memory``, ``sql``, ``dbm``, ...)
    storages: Mapping[str, type[Storage]] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(cls, pm: pluggy.PluginManager) -> Registry:
        """Ask every plugin for its classes and index them, refusing duplicate keys loudly."""
        from pyroplug.core.serializer import Serializer
        from pyroplug.core.servertype import ServerType
        from pyroplug.core.storage import Storage
        from pyroplug.core.transport import Transport

        ser = _results(pm, "pyroplug_serializers", Serializer)
        srv = _results(pm, "pyroplug_server_types", ServerType)
        trn = _results(pm, "pyroplug_transports", Transport)
        sto = _results(pm, "pyroplug_ns_storages", Storage)
        for _plugin, klass in ser:
            sid = getattr(klass, "serializer_id", None)
            if sid is not None and (type(sid) is not int or not 0 < sid < 256):
                raise PluginError(f"serializer class {_qualname(klass)} has an invalid serializer_id {sid!r} (1..255)")
            if sid is not None and PYRO4_IDS < sid < THIRD_PARTY_IDS and not klass.__module__.startswith(_BUILTIN_SERIALIZERS):
                raise PluginError(
                    f"serializer class {_qualname(klass)} uses serializer_id {sid}: ids {PYRO4_IDS + 1}..{THIRD_PARTY_IDS - 1} "
                    "are reserved; third-party serializers use 32..255 (or 1..7 to replace a disabled Pyro4 builtin)"
                )
        return cls(
            serializers=MappingProxyType(_index("serializer", "name", ser)),
            serializers_by_id=MappingProxyType(_index("serializer", "serializer_id", ser)),
            server_types=MappingProxyType(_index("server type", "name", srv)),
            transports=MappingProxyType(_index("transport", "location_kind", trn)),
            origins=MappingProxyType({k: p for p, k in ser + srv + trn + sto}),
            storages=MappingProxyType(_index("name-server storage", "scheme", sto)),
        )

    def serializer(self, name: str) -> type[Serializer]:
        """The serializer class called ``name``; PluginError lists what is available."""
        try:
            return self.serializers[name]
        except KeyError:
            raise PluginError(self._missing("serializer", name, self.serializers)) from None

    def serializer_by_id(self, serializer_id: int) -> type[Serializer]:
        """The serializer class with wire id ``serializer_id``; PluginError when none is registered."""
        try:
            return self.serializers_by_id[serializer_id]
        except KeyError:
            known = ", ".join(f"{k}={v.name}" for k, v in sorted(self.serializers_by_id.items()))
            msg = f"no serializer with id {serializer_id}; available: {known or 'none'}"
            name = _EXTRA_IDS.get(serializer_id)
            if name is not None:
                msg += f". It is {name}: pip install pyroplug[{EXTRAS[name]}]"
            raise PluginError(msg) from None

    def server_type(self, name: str) -> type[ServerType]:
        """The server-type class called ``name`` (the SERVERTYPE value)."""
        try:
            return self.server_types[name]
        except KeyError:
            raise PluginError(self._missing("server type", name, self.server_types)) from None

    def transport_for(self, location_kind: str) -> type[Transport]:
        """The transport class for a location kind (``tcp``, ``u``, or a plugin's own)."""
        try:
            return self.transports[location_kind]
        except KeyError:
            raise PluginError(self._missing("transport for location kind", location_kind, self.transports)) from None

    def storage(self, scheme: str) -> type[Storage]:
        """The name-server storage class for a storage scheme (``memory``, ``sql``, ``dbm``, ...)."""
        try:
            return self.storages[scheme]
        except KeyError:
            raise PluginError(self._missing("name-server storage", scheme, self.storages)) from None

    def provided_by(self, plugin: object) -> str:
        """A readable summary of what one plugin object provides."""
        parts = []
        for kind, table, attr in (
            ("serializer", self.serializers, "name"),
            ("server type", self.server_types, "name"),
            ("transport", self.transports, "location_kind"),
            ("name-server storage", self.storages, "scheme"),
        ):
            names = sorted(
                str(getattr(c, attr)) + (f" (id {getattr(c, 'serializer_id', '?')})" if kind == "serializer" else "")
                for c in table.values()
                if self.origins.get(c) is plugin
            )
            if names:
                parts.append(f"{kind}s: " + ", ".join(names))
        return "; ".join(parts)

    @staticmethod
    def _missing(kind: str, name: str, table: Mapping[str, Any]) -> str:
        msg = f"unknown {kind} {name!r}; available: {', '.join(sorted(table)) or 'none'}"
        extra = EXTRAS.get(name)
        if extra:
            msg += f". Install it with: pip install pyroplug[{extra}]"
        return msg


def get_registry() -> Registry:
    """The Registry of the process-wide plugin manager, built on first use."""
    global _current
    reg = _current
    if reg is None:
        from pyroplug.core.plugins import get_plugin_manager

        with _lock:
            if _current is None:
                _current = Registry.build(get_plugin_manager())
            reg = _current
    return reg


def invalidate() -> None:
    """Forget the cached Registry; the next :func:`get_registry` rebuilds it."""
    global _current
    with _lock:
        _current = None
