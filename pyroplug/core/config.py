"""The Config class: Pyro4's UPPERCASE config items and defaults, with a PYRO_* environment overlay."""

from __future__ import annotations

import dataclasses
import os
import pickle
import platform
import socket
import sys
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyroplug.core import constants

if TYPE_CHECKING:
    import pluggy

__all__ = ["Config", "config", "main"]

ENV_PREFIX = "PYRO_"
_TRUE = ("1", "yes", "on", "true")
_FALSE = ("0", "off", "no", "false")


def _default_accepted() -> set[str]:
    return {"serpent", "marshal", "json"}


@dataclass(slots=True, eq=True)
class Config:
    """All config items, with Pyro4 4.82's names and defaults.

    Differences from Pyro4, on purpose: ``REQUIRE_EXPOSE`` defaults to ``False`` (the server chapter's
    default), and ``SERPENT_BYTES_REPR`` (from Pyro5) lets bytes travel as bytes under serpent.
    ``DILL_PROTOCOL_VERSION`` is ``pickle.HIGHEST_PROTOCOL`` (what ``dill.HIGHEST_PROTOCOL`` is) without
    importing dill; Pyro4 uses -1 when dill is not installed. Environment values are stripped before
    coercion, so ``PYRO_SERIALIZERS_ACCEPTED="serpent, json"`` means what it says.
    Daemons and proxies take a :meth:`copy` when they are created.
    """

    HOST: str = "localhost"
    NS_HOST: str = "localhost"
    NS_PORT: int = 9090
    NS_BCPORT: int = 9091
    NS_BCHOST: str | None = None
    NS_AUTOCLEAN: float = 0.0
    NATHOST: str | None = None
    NATPORT: int = 0
    COMPRESSION: bool = False
    SERVERTYPE: str = "thread"
    COMMTIMEOUT: float = 0.0
    POLLTIMEOUT: float = 2.0
    SOCK_REUSE: bool = True
    SOCK_NODELAY: bool = False
    ONEWAY_THREADED: bool = True
    DETAILED_TRACEBACK: bool = False
    THREADPOOL_SIZE: int = 40
    THREADPOOL_SIZE_MIN: int = 4
    AUTOPROXY: bool = True
    MAX_MESSAGE_SIZE: int = 0
    BROADCAST_ADDRS: str = "<broadcast>, 0.0.0.0"
    FLAME_ENABLED: bool = False
    PREFER_IP_VERSION: int = 4
    SERIALIZER: str = "serpent"
    SERIALIZERS_ACCEPTED: set[str] = field(default_factory=_default_accepted)
    LOGWIRE: bool = False
    PICKLE_PROTOCOL_VERSION: int = pickle.HIGHEST_PROTOCOL
    DILL_PROTOCOL_VERSION: int = pickle.HIGHEST_PROTOCOL
    METADATA: bool = True
    REQUIRE_EXPOSE: bool = False
    USE_MSG_WAITALL: bool = hasattr(socket, "MSG_WAITALL") and platform.system() != "Windows"
    JSON_MODULE: str = "json"
    MAX_RETRIES: int = 0
    ITER_STREAMING: bool = True
    ITER_STREAM_LIFETIME: float = 0.0
    ITER_STREAM_LINGER: float = 30.0
    SSL: bool = False
    SSL_SERVERCERT: str = ""
    SSL_SERVERKEY: str = ""
    SSL_SERVERKEYPASSWD: str = ""
    SSL_REQUIRECLIENTCERT: bool = False
    SSL_CLIENTCERT: str = ""
    SSL_CLIENTKEY: str = ""
    SSL_CLIENTKEYPASSWD: str = ""
    SSL_CACERTS: str = ""
    SERPENT_BYTES_REPR: bool = False

    @classmethod
    def from_env(cls, environ: typing.Mapping[str, str] | None = None) -> Config:
        """A Config with defaults overlaid by ``PYRO_<ITEM>`` variables from ``environ`` (default os.environ)."""
        cfg = cls()
        cfg.apply_env(os.environ if environ is None else environ)
        return cfg

    def reset(self, useenvironment: bool = True) -> None:
        """Restore every item to its default, then (unless told not to) apply the environment."""
        fresh = Config()
        for name in item_names():
            setattr(self, name, getattr(fresh, name))
        if useenvironment:
            self.apply_env(os.environ)

    def apply_env(self, environ: typing.Mapping[str, str]) -> None:
        """Overlay ``PYRO_<ITEM>`` values from ``environ``, each coerced to the item's declared type.

        Raises ValueError naming the variable when a value cannot be coerced.
        """
        for name, kind in _item_types().items():
            raw = environ.get(ENV_PREFIX + name)
            if raw is not None:
                setattr(self, name, _coerce(name, kind, raw))

    def copy(self) -> Config:
        """An independent copy (the SERIALIZERS_ACCEPTED set is copied too)."""
        values = {name: getattr(self, name) for name in item_names()}
        values["SERIALIZERS_ACCEPTED"] = accepted_set(values["SERIALIZERS_ACCEPTED"])
        return Config(**values)

    def as_dict(self) -> dict[str, Any]:
        """The items as a plain dict."""
        return {name: getattr(self, name) for name in item_names()}

    asDict = as_dict  # Pyro4 spelling

    @staticmethod
    def parseAddressesString(addresses: str) -> list[str]:
        """Split a comma separated address list; ``''`` stands for the empty string."""
        result = []
        for addr in addresses.split(","):
            addr = addr.strip()
            result.append("" if addr == "''" else addr)
        return result

    def dump(self, pm: pluggy.PluginManager | None = None) -> str:
        """Readable diagnostics: versions, the plugins (of ``pm``, default the process-wide manager)
        with their distributions, and every item. A plugin that fails to load is reported, not raised.
        """
        from pyroplug.core.plugins import describe_plugins

        try:
            plugin_lines = describe_plugins(pm)
        except Exception as exc:  # noqa: BLE001 - a diagnostics dump must still print
            plugin_lines = [f"(plugins could not be loaded: {type(exc).__name__}: {exc})"]

        items = self.as_dict()
        items["LOGFILE"] = os.environ.get("PYRO_LOGFILE")
        items["LOGLEVEL"] = os.environ.get("PYRO_LOGLEVEL")
        lines = [
            f"pyroplug version: {constants.PYROPLUG_VERSION} (Pyro4 {constants.VERSION} compatible)",
            f"Loaded from: {os.path.dirname(os.path.dirname(__file__))}",
            f"Python version: {platform.python_implementation()} {platform.python_version()}"
            f" ({platform.system()}, {os.name})",
            f"Protocol version: {constants.PROTOCOL_VERSION}",
            "Plugins:",
        ]
        lines += ["    " + line for line in plugin_lines]
        lines.append("Currently active configuration settings:")
        for name, value in sorted(items.items()):
            if isinstance(value, set):
                value = ",".join(sorted(value))
            lines.append(f"{name} = {value}")
        return "\n".join(lines)


def item_names() -> tuple[str, ...]:
    """The names of all config items, in declaration order."""
    return _ITEM_NAMES


def accepted_set(value: Any) -> set[str]:
    """Normalise a SERIALIZERS_ACCEPTED value (set, list or comma separated text) to a set of names."""
    if isinstance(value, str):
        return {v.strip() for v in value.split(",") if v.strip()}
    return set(value)


def _item_types() -> dict[str, Any]:
    global _TYPES
    if _TYPES is None:
        _TYPES = typing.get_type_hints(Config)
    return _TYPES


def _coerce(name: str, kind: Any, raw: str) -> Any:
    variable = ENV_PREFIX + name
    if kind is bool:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"invalid boolean value: {variable}={raw}")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"invalid {kind.__name__} value: {variable}={raw}") from None
    if typing.get_origin(kind) is set:
        return accepted_set(raw)
    return raw  # str and 'str | None' items stay text


_ITEM_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Config))
_TYPES: dict[str, Any] | None = None

#: the process-wide config that Pyro4-style code reads and writes
config = Config.from_env()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pyroplug-check-config`` / ``python -m pyroplug.core.config``: print the dump."""
    sys.stdout.write(config.dump() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
