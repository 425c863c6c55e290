"""The UDP broadcast responder: answers ``GET_NSURI`` with the name server's URI (Pyro4's discovery)."""

from __future__ import annotations

import logging
import select
import socket
import threading
from typing import TYPE_CHECKING, Any

from pyroplug.core.config import config as global_config
from pyroplug.core.uri import URI
from pyroplug.socketutil import createBroadcastSocket, family_str, getInterfaceAddress

if TYPE_CHECKING:
    from pyroplug.core.config import Config

__all__ = ["REQUEST", "BroadcastServer"]

log = logging.getLogger(__name__)

#: the request datagram clients broadcast
REQUEST = b"GET_NSURI"
#: longest request datagram read (Pyro4's limit)
_MAX_DATAGRAM = 100


class _TransportServerAdapter:
    """Lets a BroadcastServer take part in a foreign event loop: ``sockets`` to wait on, ``events()``."""

    def __init__(self, bcserver: BroadcastServer) -> None:
        self.sockets = [bcserver]

    def events(self, eventobjects: Any) -> None:
        for bc in eventobjects:
            bc.processRequest()


class BroadcastServer:
    """Answers ``GET_NSURI`` datagrams on NS_BCPORT with ``nsUri`` encoded ISO-8859-1.

    When the URI's host is ``0.0.0.0`` the reply carries the address of the interface that faces the
    requester instead. Any other datagram, and any error while answering, is logged and ignored: the
    responder never stops because of what it receives. Run it with :meth:`runInThread`, or put
    :meth:`fileno` in your own select loop and call :meth:`processRequest` when it is readable.
    """

    def __init__(
        self, nsUri: URI | str, bchost: str | None = None, bcport: int | None = None, ipv6: bool = False,  # noqa: N803
        *, config: Config | None = None,
    ) -> None:
        cfg = config or global_config
        self.nsUri = URI(nsUri)
        if bcport is None:
            bcport = cfg.NS_BCPORT
        if bchost is None:
            bchost = cfg.NS_BCHOST
        host = self.nsUri.host or ""
        if ipv6 or ":" in host:
            self.sock = createBroadcastSocket((bchost or "::", bcport), reuseaddr=cfg.SOCK_REUSE, timeout=2.0, ipv6=True)
        else:
            self.sock = createBroadcastSocket((bchost or "", bcport), reuseaddr=cfg.SOCK_REUSE, timeout=2.0)
        bound = self.sock.getsockname()
        shown = bchost or bound[0]
        self.locationStr = f"[{shown}]:{bound[1]}" if ":" in shown else f"{shown}:{bound[1]}"
        self.transportServer = _TransportServerAdapter(self)
        self.running = True
        self._thread: threading.Thread | None = None
        log.info("ns broadcast server created on %s - %s", self.locationStr, family_str(self.sock))

    def getPort(self) -> int:  # noqa: N802 - Pyro4 API
        """The UDP port the responder is bound to."""
        return int(self.sock.getsockname()[1])

    def fileno(self) -> int:
        """The socket's file descriptor, for select loops."""
        return self.sock.fileno()

    def reply_for(self, requester: str) -> bytes:
        """The reply datagram for a request from address ``requester``."""
        uri = URI(self.nsUri)
        if uri.host == "0.0.0.0":
            try:
                uri.host = getInterfaceAddress(requester)
            except (OSError, ValueError) as exc:
                log.debug("no interface address facing %s: %s", requester, exc)
        return str(uri).encode("iso-8859-1")

    def processRequest(self) -> None:  # noqa: N802 - Pyro4 API
        """Read one datagram (waiting at most 2 s) and answer it if it is a ``GET_NSURI`` request."""
        try:
            data, addr = self.sock.recvfrom(_MAX_DATAGRAM)
        except (OSError, ValueError):  # timeout, closed socket, ICMP error from an earlier reply
            return
        if data.strip() != REQUEST:
            log.debug("ignored a %d-byte datagram from %s", len(data), addr)
            return
        try:
            reply = self.reply_for(addr[0])
            self.sock.sendto(reply, addr)
            log.debug("answered broadcast request from %s", addr[0])
        except Exception as exc:  # never let one request stop the responder
            log.warning("cannot answer broadcast request from %s: %s", addr, exc)

    def runInThread(self) -> threading.Thread:  # noqa: N802 - Pyro4 API
        """Serve requests in a daemon thread until :meth:`close`; returns the thread."""
        thread = threading.Thread(target=self._loop, name="pyroplug-ns-broadcast", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def _loop(self) -> None:
        while self.running:
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.5)
            except (OSError, ValueError):  # closed underneath us
                break
            if ready and self.running:
                self.processRequest()
        log.debug("broadcast server loop terminated")

    def close(self) -> None:
        """Stop answering and release the port."""
        self.running = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        self.sock.close()

    def __enter__(self) -> BroadcastServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<pyroplug.naming.BroadcastServer on {self.locationStr} for {self.nsUri}>"
