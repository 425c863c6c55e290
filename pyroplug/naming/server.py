"""NameServerDaemon, startNS and startNSloop: a name server on a pyroplug Daemon, with its storage."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from pyroplug.core.config import Config
from pyroplug.core.config import config as global_config
from pyroplug.core.constants import NAMESERVER_NAME
from pyroplug.core.daemon import Daemon
from pyroplug.core.errors import PluginError, PyroError
from pyroplug.core.registry import get_registry
from pyroplug.core.uri import URI
from pyroplug.naming.autoclean import AutoCleaner
from pyroplug.naming.broadcast import BroadcastServer
from pyroplug.naming.nameserver import NameServer
from pyroplug.naming.storage import Storage, split_storage_spec

__all__ = ["DEFAULT_SERVERTYPE", "NAMESERVER_METADATA", "NameServerDaemon", "broadcast_refusal", "make_storage", "startNS", "startNSloop"]

log = logging.getLogger(__name__)

#: the server type a name server runs on unless told otherwise. Every name-server call is short and
#: holds the name server's one lock, so worker threads add switching but no concurrency; one selector
#: thread serves many clients faster and never runs out of workers when clients keep idle connections.
DEFAULT_SERVERTYPE = "multiplex"

#: the metadata of the name server's own registration (Pyro4's tag first)
NAMESERVER_METADATA = frozenset({"class:Pyro4.naming.NameServer", "class:pyroplug.naming.NameServer"})


def make_storage(spec: str | Storage | None, config: Config | None = None) -> Storage:
    """Open the storage a storage string names: ``memory`` (None), ``sql:<file>``, ``dbm:<file>``, or a plugin's.

    ValueError (Pyro4's) names an invalid string and lists the available schemes.
    """
    if isinstance(spec, Storage):
        return spec
    scheme, location = split_storage_spec(spec)
    try:
        cls = get_registry().storage(scheme)
    except PluginError as exc:
        raise ValueError(f"invalid storage type '{spec}': {exc}") from None
    storage = cls(location, config)
    log.debug("using %s storage %s", scheme, location or "(volatile)")
    return storage


class NameServerDaemon(Daemon):
    """A Daemon hosting a :class:`NameServer` as ``Pyro.NameServer`` (on NS_PORT by default).

    ``storage`` is a storage string (``memory``, ``sql:<file>``, ``dbm:<file>``) or a Storage. The name
    server registers itself with metadata ``class:Pyro4.naming.NameServer``; with NS_AUTOCLEAN > 0 an
    :class:`AutoCleaner` thread runs while the daemon is open. ``servertype`` defaults to
    :data:`DEFAULT_SERVERTYPE` (``multiplex``), not to SERVERTYPE. Extra keyword arguments go to Daemon.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        unixsocket: str | None = None,
        nathost: str | None = None,
        natport: int | None = None,
        storage: str | Storage | None = None,
        *,
        servertype: str | None = None,
        config: Config | None = None,
        **daemon_options: Any,
    ) -> None:
        cfg = (config or global_config).copy()
        cfg.SERVERTYPE = servertype or DEFAULT_SERVERTYPE
        if port is None:
            port = cfg.NS_PORT
        if cfg.NS_AUTOCLEAN and not AutoCleaner.override_autoclean_min and cfg.NS_AUTOCLEAN < AutoCleaner.min_autoclean_value:
            raise ValueError(f"NS_AUTOCLEAN cannot be smaller than {AutoCleaner.min_autoclean_value:g}")
        store = make_storage(storage, cfg)
        self.cleaner_thread: AutoCleaner | None = None
        self.nameserver: NameServer | None = None
        try:
            super().__init__(host, port, unixsocket, nathost, natport, config=cfg, **daemon_options)
        except BaseException:
            store.close()
            raise
        ns = self.nameserver = NameServer(store)
        existing = ns.count()
        if existing:
            log.info("storage %r holds %d registrations", store, existing)
        self.register(ns, NAMESERVER_NAME)
        ns.register(NAMESERVER_NAME, self.uriFor(ns), metadata=NAMESERVER_METADATA if store.supports_metadata else None)
        if self.config.NS_AUTOCLEAN > 0:
            self.cleaner_thread = AutoCleaner(ns, self.config.NS_AUTOCLEAN, config=self.config)
            self.cleaner_thread.start()
        log.info("name server daemon created on %s", self.locationStr)

    @property
    def uri(self) -> URI:
        """The name server's URI (at the NAT location when there is one)."""
        return self.uriFor(NAMESERVER_NAME)

    def close(self) -> None:
        """Close the daemon, stop the autocleaner and close the storage."""
        super().close()
        cleaner, self.cleaner_thread = self.cleaner_thread, None
        if cleaner is not None:
            cleaner.close()
        ns, self.nameserver = self.nameserver, None
        if ns is not None:
            with ns.lock:
                ns.storage.close()

    def __enter__(self) -> NameServerDaemon:
        if self.nameserver is None:
            raise PyroError("cannot reuse this object")
        super().__enter__()
        return self


def broadcast_refusal(daemon: Daemon) -> str | None:
    """Why no broadcast responder may run for this daemon (unix socket, IPv6, loopback), or None."""
    sock = daemon.sock
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return "Not starting broadcast server for Unix domain socket."
    if sock.family == socket.AF_INET6:
        return "Not starting broadcast server for IPv6."
    hostip = sock.getsockname()[0]
    if hostip.startswith("127."):
        return "Not starting broadcast server for localhost."
    return None


def startNS(  # noqa: N802 - Pyro4 API
    host: str | None = None,
    port: int | None = None,
    enableBroadcast: bool = True,  # noqa: N803
    bchost: str | None = None,
    bcport: int | None = None,
    unixsocket: str | None = None,
    nathost: str | None = None,
    natport: int | None = None,
    storage: str | Storage | None = None,
    hmac: bytes | str | None = None,
    *,
    servertype: str | None = None,
    config: Config | None = None,
) -> tuple[URI, NameServerDaemon, BroadcastServer | None]:
    """Create a name server daemon (and broadcast responder) for your own loop: (uri, daemon, bcserver).

    The responder is not created for unix sockets, IPv6 or a loopback address, nor when
    ``enableBroadcast`` is False; it is created but not started (call ``bcserver.runInThread()``).
    """
    daemon = NameServerDaemon(host, port, unixsocket, nathost, natport, storage, servertype=servertype, config=config)
    try:
        daemon._pyroHmacKey = hmac
        ns_uri = daemon.uriFor(NAMESERVER_NAME)
        bcserver = None
        if enableBroadcast and broadcast_refusal(daemon) is None:
            internal = daemon.uriFor(NAMESERVER_NAME, nat=False)
            bcserver = BroadcastServer(internal, bchost, bcport, config=daemon.config)
    except BaseException:
        daemon.close()
        raise
    return ns_uri, daemon, bcserver


def startNSloop(  # noqa: N802 - Pyro4 API
    host: str | None = None,
    port: int | None = None,
    enableBroadcast: bool = True,  # noqa: N803
    bchost: str | None = None,
    bcport: int | None = None,
    unixsocket: str | None = None,
    nathost: str | None = None,
    natport: int | None = None,
    storage: str | Storage | None = None,
    hmac: bytes | str | None = None,
    *,
    servertype: str | None = None,
    config: Config | None = None,
    report: Callable[[str], None] | None = None,
    ready: Callable[[URI, NameServerDaemon, BroadcastServer | None], None] | None = None,
) -> None:
    """Start a name server (and broadcast responder thread) and serve until the daemon shuts down.

    Status lines go to the log, and to ``report`` when given (the ``pyroplug-ns`` tool prints them).
    ``ready(uri, daemon, bcserver)`` is called before the status lines and the request loop.
    """

    def say(line: str) -> None:
        log.info("%s", line)
        if report is not None:
            report(line)

    ns_uri, daemon, bcserver = startNS(host, port, enableBroadcast, bchost, bcport, unixsocket, nathost, natport,
                                       storage, hmac, servertype=servertype, config=config)
    try:
        if bcserver is not None:
            say(f"Broadcast server running on {bcserver.locationStr}")
            bcserver.runInThread()
        elif enableBroadcast:
            say(broadcast_refusal(daemon) or "Not starting broadcast server.")
        if ready is not None:
            ready(ns_uri, daemon, bcserver)
        assert daemon.nameserver is not None
        existing = daemon.nameserver.count()
        if existing > 1:
            say(f"Persistent store contains {existing} existing registrations.")
        sock = daemon.sock
        hostip = sock.getsockname()[0] if sock is not None and sock.family != getattr(socket, "AF_UNIX", None) else "Unix domain socket"
        say(f"NS running on {daemon.locationStr} ({hostip})")
        if not hmac:
            say("Warning: HMAC key not set. Anyone can connect to this server!")
        if daemon.natLocationStr:
            say(f"internal URI = {daemon.uriFor(NAMESERVER_NAME, nat=False)}")
            say(f"external URI = {ns_uri}")
        else:
            say(f"URI = {ns_uri}")
        daemon.requestLoop()
    finally:
        daemon.close()
        if bcserver is not None:
            bcserver.close()
    say("NS shut down.")
