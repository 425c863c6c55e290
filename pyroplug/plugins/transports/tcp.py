"""The ``tcp`` transport: IPv4 and IPv6 stream sockets for ``host:port`` and ``[ipv6]:port`` locations."""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pyroplug import socketutil
from pyroplug.core import errors
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.transport import (
    LISTEN_BACKLOG,
    Connection,
    Listener,
    SocketListener,
    Transport,
    receive_timeout,
    set_receive_timeout,
)

if TYPE_CHECKING:
    from pyroplug.core.uri import URI

__all__ = ["TCPListener", "TCPTransport", "format_location", "pyroplug_transports"]

log = logging.getLogger(__name__)


def format_location(host: str, port: int) -> str:
    """``host:port``, or ``[host]:port`` for an IPv6 address."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _tune(sock: socket.socket) -> None:
    """Options for every connected TCP socket, client side and accepted.

    TCP_NODELAY is always on, whatever SOCK_NODELAY says (Pyro4 leaves it off by default): a call is a
    small request answered by a small reply, and a message written as header + payload (the gathering
    send of large payloads) would otherwise sit in Nagle's buffer until the peer's delayed ACK, up to
    ~40 ms per call. SO_KEEPALIVE lets dead peers of idle connections be noticed eventually.
    """
    # (socketutil.setNoDelay and setKeepalive, inline: this runs for every connect)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except OSError:
        pass


def _tuned(sock: socket.socket) -> bool:
    """True when ``sock`` has TCP_NODELAY and SO_KEEPALIVE on."""
    try:
        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)) and bool(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        )
    except OSError:
        return False


def _defer_accept(sock: socket.socket) -> None:
    """Where the platform can (Linux): let accept() return a connection only once its first bytes arrived.

    A Pyro client always speaks first (the handshake; a TLS client its hello), so the daemon then reads
    a new connection's handshake at once instead of waking up twice. A connection that stays silent is
    still accepted, after about a second (and COMMTIMEOUT applies to it as to any other).
    """
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, option, 1)
        except OSError:
            pass


class TCPListener(SocketListener):
    """A listening TCP socket; accepted sockets get TCP_NODELAY, SO_KEEPALIVE and COMMTIMEOUT.

    With the SSL config item on, an accepted socket becomes a :class:`~pyroplug.socketutil.TLSServerConnection`
    whose TLS handshake runs as the client's records arrive (never inside accept).
    """

    #: whether accepted sockets inherit the listener's TCP_NODELAY and SO_KEEPALIVE (Linux: yes); None: not checked yet
    _inherits: bool | None = None
    #: whether accepted sockets inherit the listener's SO_RCVTIMEO (Linux: yes); None: not checked yet
    _inherits_wait: bool | None = None

    def set_receive_wait(self, seconds: float) -> bool:
        """Set SO_RCVTIMEO on the listening socket: accepted sockets inherit it on Linux (checked on the
        first one). Only for plain blocking sockets: not with SSL or COMMTIMEOUT."""
        if self.config.SSL or self.config.COMMTIMEOUT or not sys.platform.startswith("linux") or seconds <= 0:
            return False
        if not set_receive_timeout(self._sock, seconds):
            return False
        self.receive_wait = seconds
        return True

    def wrap(self, csock: socket.socket) -> Connection:
        if not self._inherits:
            if self._inherits is None:
                self._inherits = _tuned(csock)
            if not self._inherits:
                _tune(csock)
        if self.config.SSL:
            return socketutil.ssl_wrap_server(csock, self.config)
        if socket.getdefaulttimeout() is not None:  # else accept() made a blocking socket already
            csock.setblocking(True)
        if self.config.COMMTIMEOUT:
            csock.settimeout(self.config.COMMTIMEOUT)
        conn = socketutil.SocketConnection(csock)
        if self.receive_wait:
            if self._inherits_wait is None:
                self._inherits_wait = receive_timeout(csock) > 0
            if self._inherits_wait:
                conn.receive_wait = self.receive_wait
        return conn


class TCPTransport(Transport):
    """TCP over IPv4 or IPv6. Host names resolve with PREFER_IP_VERSION (4, 6 or 0 = let the OS choose)."""

    location_kind: ClassVar[str] = "tcp"

    def connect(self, uri: URI, timeout: float | None = None) -> Connection:
        """Connect to ``uri.host``/``uri.port``, trying each resolved address in turn.

        Raises CommunicationError ``cannot connect to HOST:PORT: ...`` when no address accepts,
        TimeoutError when the connect timed out.
        """
        host, port = uri.host, uri.port
        if not host or port is None:
            raise errors.CommunicationError(f"not a tcp location: {uri}")
        if timeout is None:
            timeout = self.config.COMMTIMEOUT
        try:
            addresses = socketutil.resolve(host, port, self.config.PREFER_IP_VERSION)
        except OSError as exc:
            location = format_location(host, port)
            raise errors.CommunicationError(f"cannot connect to {location}: cannot resolve host: {exc}") from exc
        last: OSError | None = None
        for family, sockaddr in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                if timeout or socket.getdefaulttimeout() is not None:  # else it blocks already: no system call
                    sock.settimeout(timeout or None)
                sock.connect(sockaddr)
                _tune(sock)
            except TimeoutError as exc:  # the builtin, raised by socket timeouts
                sock.close()
                raise errors.TimeoutError(f"cannot connect to {format_location(host, port)}: timeout") from exc
            except OSError as exc:
                sock.close()
                last = exc
                continue
            if self.config.SSL:  # the server's certificate must name the URI's host
                sock = socketutil.ssl_wrap_client(sock, self.config, host, format_location(host, port))
            return socketutil.SocketConnection(sock)
        reason = "connection refused" if isinstance(last, ConnectionRefusedError) else str(last)
        raise errors.CommunicationError(f"cannot connect to {format_location(host, port)}: {reason}") from last

    def listen(self, host: str | None = None, port: int = 0, address: str | None = None) -> Listener:
        """Bind ``host``:``port`` (None: the config's HOST; '' or 0.0.0.0: every interface; port 0: a free one).

        The listener's location keeps ``host`` as given (``localhost:PORT``), like Pyro4.
        """
        if address is not None:
            raise errors.CommunicationError("the tcp transport binds host and port, not an address")
        if host is None:
            host = self.config.HOST
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            family, sockaddr = socketutil.resolve(host, port, self.config.PREFER_IP_VERSION, passive=True)[0]
        except OSError as exc:
            raise errors.CommunicationError(f"cannot bind {format_location(host, port)}: cannot resolve host: {exc}") from exc
        if self.config.SSL:
            socketutil.ssl_server_context(self.config)  # a missing certificate fails here, not per connection
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if self.config.SOCK_REUSE:
                socketutil.setReuseAddr(sock)
            _tune(sock)  # accepted sockets inherit these on Linux: no per-connection system calls then
            _defer_accept(sock)
            socketutil.setNoInherit(sock)
            sock.bind(sockaddr)
            sock.listen(LISTEN_BACKLOG)
        except OSError as exc:
            sock.close()
            raise errors.CommunicationError(f"cannot bind {format_location(host, port)}: {exc}") from exc
        bound: Any = sock.getsockname()
        location = format_location(host or str(bound[0]), port or int(bound[1]))
        log.debug("listening on %s (%s)", location, socketutil.family_str(sock))
        return TCPListener(sock, location, self.config)


@hookimpl
def pyroplug_transports() -> Sequence[type[Transport]]:
    """The tcp transport."""
    return (TCPTransport,)
