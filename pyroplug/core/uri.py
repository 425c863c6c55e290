"""URI: ``PYRO:``, ``PYRONAME:`` and ``PYROMETA:`` addresses and their locations.

Location kinds: ``host:port`` and ``[ipv6]:port`` (transport ``tcp``), ``./u:path`` (unix sockets;
a path starting with NUL is a Linux abstract socket) and ``./KIND:address`` for transports that
plugins add (stored as ``sockname = "KIND:address"`` so the Pyro4 5-tuple state still carries it;
unlike a unix path, a plugin address may contain ``:``).

Parsing follows Pyro4 4.82, errors and messages included, with two deliberate differences: Pyro4
reads ``./KIND:address`` as a host named ``./KIND``, and it ignores text after a bracketed IPv6
location's port (``[::1]:99junk`` is port 99 there, an error here).
"""

from __future__ import annotations

import re
from typing import Any

from pyroplug.core import errors
from pyroplug.core.serializer import wire_class

__all__ = ["URI"]

_URI_RE = re.compile(r"(?P<protocol>[Pp][Yy][Rr][Oo][a-zA-Z]*):(?P<object>\S+?)(@(?P<location>.+))?$")
_IPV6_RE = re.compile(r"\[([0-9a-fA-F:%]+)](.*)$", re.S)
_KIND_RE = re.compile(r"\./(?P<kind>[A-Za-z][A-Za-z0-9_]*):(?P<address>.*)$", re.S)


@wire_class("Pyro4.core.URI")
class URI:
    """A Pyro object address. Equality and hashing use (protocol, object, sockname, host, port)."""

    __slots__ = ("protocol", "object", "sockname", "host", "port")

    protocol: str
    #: the object id; for PYROMETA the set of metadata strings
    object: Any
    sockname: str | None
    host: str | None
    port: int | None

    def __init__(self, uri: str | URI) -> None:
        if isinstance(uri, URI):
            self.protocol, self.object, self.sockname, self.host, self.port = uri._wire_state()
            return
        if not isinstance(uri, str):
            raise TypeError("uri parameter object is of wrong type")
        parsed = _parsed_pyro.get(uri)
        if parsed is not None:  # a PYRO: text parsed before (its fields are immutable values)
            self.protocol, self.object, self.sockname, self.host, self.port = parsed
            return
        self.sockname = self.host = self.port = None
        match = _URI_RE.match(uri)
        if not match:
            raise errors.PyroError("invalid uri")
        self.protocol = match.group("protocol").upper()
        self.object = match.group("object")
        location = match.group("location")
        if self.protocol == "PYRONAME":
            self._parse_location(location, _ns_port())
        elif self.protocol == "PYRO":
            if not location:
                raise errors.PyroError("invalid uri")
            self._parse_location(location, None)
            if len(_parsed_pyro) >= _PARSED_MAX:
                _parsed_pyro.clear()
            _parsed_pyro[uri] = self._wire_state()
        elif self.protocol == "PYROMETA":
            self.object = {m.strip() for m in self.object.split(",")}
            self._parse_location(location, _ns_port())
        else:
            raise errors.PyroError("invalid uri (protocol)")

    def _parse_location(self, location: str | None, default_port: int | None) -> None:
        if not location:
            return
        kind = _KIND_RE.match(location)
        if kind:
            name, address = kind.group("kind"), kind.group("address")
            if not address or (name == "u" and ":" in address) or name == "tcp":
                raise errors.PyroError("invalid uri (location)")
            self.sockname = address if name == "u" else f"{name}:{address}"
            return
        port: Any
        if location.startswith("["):
            if location.startswith("[["):
                raise errors.PyroError("invalid ipv6 address: enclosed in too many brackets")
            m = _IPV6_RE.match(location)
            if not m:
                raise errors.PyroError("invalid ipv6 address: the part between brackets must be a numeric ipv6 address")
            self.host, rest = m.group(1), m.group(2)
            if rest and not rest.startswith(":"):
                raise errors.PyroError("invalid uri (location)")
            port = rest[1:]
        else:
            self.host, _, port = location.partition(":")
        if not port:
            port = default_port
        try:
            self.port = int(port)
        except (TypeError, ValueError):
            raise errors.PyroError(f"invalid port in uri, port={port}") from None

    @staticmethod
    def isUnixsockLocation(location: str) -> bool:  # noqa: N802 - Pyro4 API
        """True for a ``./u:`` unix socket location."""
        return location.startswith("./u:")

    @property
    def location_kind(self) -> str:
        """The transport kind this URI needs: ``tcp``, ``u`` or a plugin transport's kind."""
        if self.host is not None:
            return "tcp"
        if self.sockname is not None and ":" in self.sockname:
            return self.sockname.partition(":")[0]
        return "u"

    @property
    def address(self) -> str | None:
        """The transport-specific address: the socket path, or the address part of ``./KIND:address``."""
        if self.sockname is not None and ":" in self.sockname:
            return self.sockname.partition(":")[2]
        return self.sockname

    @property
    def location(self) -> str | None:
        """The location string, e.g. ``localhost:5555``, ``[::1]:5555`` or ``./u:/tmp/sock``."""
        if self.host:
            if ":" in self.host:
                return f"[{self.host}]:{self.port}"
            return f"{self.host}:{self.port}"
        if self.sockname:
            if ":" in self.sockname:
                return "./" + self.sockname
            return "./u:" + self.sockname
        return None

    def asString(self) -> str:  # noqa: N802 - Pyro4 API
        """The URI as text."""
        if self.protocol == "PYROMETA":
            result = "PYROMETA:" + ",".join(sorted(self.object))
        else:
            result = f"{self.protocol}:{self.object}"
        location = self.location
        if location:
            result += "@" + location
        return result

    __str__ = asString

    def __repr__(self) -> str:
        return f"<pyroplug.URI {self.asString()}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, URI):
            return False
        return self._wire_state() == other._wire_state()

    def __hash__(self) -> int:
        obj = frozenset(self.object) if isinstance(self.object, (set, frozenset)) else self.object
        return hash((self.protocol, obj, self.sockname, self.host, self.port))

    def _wire_state(self) -> tuple:
        return self.protocol, self.object, self.sockname, self.host, self.port

    @classmethod
    def _from_wire_state(cls, state: Any) -> URI:
        if not isinstance(state, (list, tuple)) or len(state) != 5:
            raise errors.SerializeError("invalid URI state")
        uri = cls.__new__(cls)
        uri.protocol, obj, uri.sockname, uri.host, uri.port = state
        uri.object = set(obj) if isinstance(obj, (list, tuple, set)) else obj
        return uri

    def __getstate__(self) -> tuple:
        return self._wire_state()

    def __setstate__(self, state: tuple) -> None:
        self.protocol, self.object, self.sockname, self.host, self.port = state


#: PYRO: URI text -> its parsed fields (PYRONAME/PYROMETA depend on config and are parsed each time)
_parsed_pyro: dict[str, tuple] = {}
_PARSED_MAX = 4096


def _ns_port() -> int:
    from pyroplug.core.config import config

    return config.NS_PORT
