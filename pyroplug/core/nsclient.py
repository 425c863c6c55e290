"""The name-server client: locateNS() (direct, then UDP broadcast) and resolve() of PYRONAME/PYROMETA URIs."""

from __future__ import annotations

import functools
import logging
import os
import random
import socket
import time
from typing import TYPE_CHECKING

from pyroplug.core import errors
from pyroplug.core.config import config
from pyroplug.core.constants import NAMESERVER_NAME
from pyroplug.core.uri import URI

if TYPE_CHECKING:
    from pyroplug.core.proxy import Proxy

__all__ = ["broadcast_locate", "locateNS", "resolve"]

log = logging.getLogger(__name__)

BROADCAST_REQUEST = b"GET_NSURI"
BROADCAST_TIMEOUT = 0.7
BROADCAST_ATTEMPTS = 3
#: Debian and Ubuntu map the host name to this loopback address; locateNS tries it too
DEBIAN_HOST_ADDRESS = "127.0.1.1"


def _bound_proxy(uri: str | URI, hmac_key: bytes | str | None) -> Proxy:
    from pyroplug.core.proxy import Proxy

    proxy = Proxy(uri)
    proxy._pyroHmacKey = hmac_key
    proxy._pyroBind()
    return proxy


def _location(host: str, port: int) -> str:
    if host.startswith("./"):  # ./u:path, or ./KIND:address of a plugin transport
        return host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def broadcast_locate(port: int | None = None, timeout: float = BROADCAST_TIMEOUT, attempts: int = BROADCAST_ATTEMPTS) -> str | None:
    """Ask name servers on the local network for their URI (UDP ``GET_NSURI``); the URI text or None.

    The request goes to every address in BROADCAST_ADDRS on ``port`` (default NS_BCPORT); each attempt
    waits ``timeout`` seconds for a reply. Replies that are not a valid PYRO URI are ignored.
    """
    port = port or config.NS_BCPORT
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if config.SOCK_REUSE:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(attempts):
            for addr in config.parseAddressesString(config.BROADCAST_ADDRS):
                try:
                    sock.sendto(BROADCAST_REQUEST, (addr, port))
                except OSError:
                    continue  # an address this host cannot send to (no broadcast route, ...)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, _ = sock.recvfrom(100)
                except TimeoutError:
                    break
                except OSError:  # e.g. ICMP port unreachable from an address nobody listens on
                    continue
                text = data.decode("iso-8859-1")
                try:
                    if URI(text).protocol == "PYRO":
                        return text
                except errors.PyroError:
                    pass
                log.debug("ignored an invalid broadcast reply: %r", data[:100])
        return None
    finally:
        sock.close()


def _hosts_file() -> str:
    if os.name == "nt":
        return os.path.join(os.environ.get("SystemRoot", r"C:\Windows"), "System32", "drivers", "etc", "hosts")
    return "/etc/hosts"


@functools.lru_cache(maxsize=1)
def _debian_loopback_alias() -> bool:
    """True when the hosts file maps a name to 127.0.1.1 (Debian and Ubuntu map the host name there).

    Pyro4 asks the resolver (``gethostbyaddr``), which may send a DNS query off the machine; reading
    the hosts file finds the same Debian entry without any network traffic.
    """
    try:
        with open(_hosts_file(), encoding="utf-8", errors="replace") as hosts:
            for line in hosts:
                fields = line.split("#", 1)[0].split()
                if len(fields) > 1 and fields[0] == DEBIAN_HOST_ADDRESS:
                    return True
    except OSError:
        pass
    return False


def locateNS(  # noqa: N802 - Pyro4 API
    host: str | None = None, port: int | None = None, broadcast: bool = True, hmac_key: bytes | str | None = None
) -> Proxy:
    """A bound proxy for a name server: at ``host``/``port`` if given, else by Pyro4's search order.

    Without a host: NS_HOST directly when it is a loopback name (and then 127.0.1.1 when that address
    is known, as on Debian), then a UDP broadcast to BROADCAST_ADDRS on NS_BCPORT (or ``port``) unless
    ``broadcast`` is False or PREFER_IP_VERSION is 6 (the broadcast result is returned unbound), then
    NS_HOST:NS_PORT. NamingError("Failed to locate the nameserver") when nothing answers.
    ``host`` may also be a unix socket location ``./u:path``.
    """
    if host is None:
        ns_host = config.NS_HOST
        if ns_host in ("localhost", "::1") or ns_host.startswith("127."):
            candidates = [ns_host]
            if ":" not in ns_host and ns_host != DEBIAN_HOST_ADDRESS:
                candidates.append(DEBIAN_HOST_ADDRESS)
            for candidate in candidates:
                if candidate == DEBIAN_HOST_ADDRESS and not _debian_loopback_alias():
                    continue  # checked lazily: only when the NS was not found at NS_HOST itself
                try:
                    return _bound_proxy(f"PYRO:{NAMESERVER_NAME}@{_location(candidate, port or config.NS_PORT)}", hmac_key)
                except errors.PyroError:
                    log.debug("no name server at %s", candidate)
        if broadcast and config.PREFER_IP_VERSION != 6:
            found = broadcast_locate(port)
            if found:
                log.debug("located NS by broadcast: %s", found)
                from pyroplug.core.proxy import Proxy

                proxy = Proxy(found)
                proxy._pyroHmacKey = hmac_key
                return proxy
            log.debug("broadcast locate failed, trying NS_HOST directly")
        host, port = ns_host, config.NS_PORT
    uri = URI(f"PYRO:{NAMESERVER_NAME}@{_location(host, port or config.NS_PORT)}")
    try:
        return _bound_proxy(uri, hmac_key)
    except errors.PyroError as exc:
        raise errors.NamingError("Failed to locate the nameserver") from exc


def resolve(uri: str | URI, hmac_key: bytes | str | None = None) -> URI:
    """Turn a PYRONAME or PYROMETA URI into a PYRO URI by asking the name server (PYRO: unchanged)."""
    if isinstance(uri, str):
        uri = URI(uri)
    elif not isinstance(uri, URI):
        raise TypeError("can only resolve Pyro URIs")
    if uri.protocol == "PYRO":
        return uri
    ns = locateNS(uri.location if uri.sockname else uri.host, uri.port, hmac_key=hmac_key)
    with ns:
        if uri.protocol == "PYRONAME":
            found = ns.lookup(uri.object)
            return found if isinstance(found, URI) else URI(found)
        if uri.protocol == "PYROMETA":
            candidates = ns.list(metadata_all=uri.object)
            if not candidates:
                raise errors.NamingError(f"no registrations available with desired metadata properties {uri.object}")
            return URI(random.choice(list(candidates.values())))
    raise errors.PyroError("invalid uri protocol")
