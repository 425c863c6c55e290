"""The Transport plugin contract: Transport, Listener and Connection, and OSError -> CommunicationError.

A transport turns a URI location into a connected :class:`Connection` (client side) and a bind request
into a :class:`Listener` (server side). Socket-based transports reuse :class:`SocketConnection` and
:class:`SocketListener`, which hold all of pyroplug's socket I/O on the message path.
"""

from __future__ import annotations

import errno
import socket
import weakref
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from pyroplug.core import errors
from pyroplug.core.protocol import Message, MessageReader

if TYPE_CHECKING:
    from pyroplug.core.config import Config
    from pyroplug.core.uri import URI

__all__ = ["Connection", "Listener", "SocketConnection", "SocketListener", "Transport", "map_oserror"]

#: payloads at least this large are sent with a gathering sendmsg instead of being concatenated
GATHER_THRESHOLD = 65536
_RETRY_ERRNOS = {errno.EINTR, errno.EAGAIN, errno.EWOULDBLOCK}


def map_oserror(exc: BaseException, doing: str) -> errors.CommunicationError:
    """Translate a socket-level exception into the matching pyroplug CommunicationError."""
    if isinstance(exc, socket.timeout):
        return errors.TimeoutError(f"{doing}: timeout")
    if isinstance(exc, (ConnectionError, EOFError)):
        return errors.ConnectionClosedError(f"{doing}: connection lost: {exc}")
    return errors.ConnectionClosedError(f"{doing}: {exc}")


class Connection(ABC):
    """A connected, ordered byte stream between a proxy and a daemon.

    ``reader`` is the connection's :class:`MessageReader`; ``pyroInstances`` holds session-mode
    instances and ``tracked_resources`` the resources registered with ``track_resource``.
    """

    def __init__(self) -> None:
        self.reader = MessageReader()
        self.pyroInstances: dict[type, Any] = {}
        self.tracked_resources: weakref.WeakSet[Any] = weakref.WeakSet()
        self.keep_open = False
        #: set by the daemon once the handshake succeeded
        self.handshaked = False
        #: free slot for the daemon and server type (last activity time, etc.)
        self.last_activity = 0.0

    @abstractmethod
    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``; CommunicationError on failure."""

    def send_parts(self, head: bytes, payload: bytes | bytearray | memoryview) -> None:
        """Send an encoded message (see :func:`pyroplug.core.protocol.encode_parts`)."""
        if len(payload) < GATHER_THRESHOLD:
            self.send(head + payload)
        else:
            self.send(head)
            self.send(payload)

    @abstractmethod
    def recv_into(self, buffer: memoryview) -> int:
        """Receive at most ``len(buffer)`` bytes into it; 0 means the peer closed the stream."""

    @abstractmethod
    def close(self) -> None:
        """Close the stream (idempotent)."""

    @abstractmethod
    def fileno(self) -> int:
        """A selectable file descriptor that becomes readable when data (or EOF) arrives."""

    def settimeout(self, timeout: float | None) -> None:
        """Set the blocking timeout of send/recv (None or 0: block forever)."""

    def gettimeout(self) -> float | None:
        return None

    def getpeercert(self) -> dict | None:
        """The peer's TLS certificate, when the transport has one."""
        return None

    @property
    def peer(self) -> Any:
        """The peer's address, in the transport's own form."""
        return None

    @property
    def family(self) -> str:
        """A short name of the address family, e.g. ``IPv4``, ``IPv6``, ``Unix``."""
        return "?"

    # --- message helpers (the per-call path) -------------------------------------------
    def recv_message(self) -> Message:
        """Block until one whole message has arrived, and return it."""
        reader = self.reader
        msg = reader.next_message()
        while msg is None:
            n = self.recv_into(reader.get_buffer())
            if not n:
                raise errors.ConnectionClosedError("receiving: not enough data" if reader.pending else "receiving: connection closed")
            reader.buffer_updated(n)
            msg = reader.next_message()
        return msg

    def fill(self) -> None:
        """Receive whatever is available now (one read) into the reader; EOF raises ConnectionClosedError."""
        reader = self.reader
        n = self.recv_into(reader.get_buffer())
        if not n:
            raise errors.ConnectionClosedError("receiving: connection closed")
        reader.buffer_updated(n)

    # Pyro4's SocketConnection names
    setTimeout = settimeout  # noqa: N815
    getTimeout = gettimeout  # noqa: N815


class SocketConnection(Connection):
    """A Connection over a connected stream socket (TCP, unix, socketpair, TLS)."""

    def __init__(self, sock: socket.socket, keep_open: bool = False) -> None:
        super().__init__()
        self.sock = sock
        self.keep_open = keep_open
        self._send = sock.sendall
        self._recv_into = sock.recv_into
        self._sendmsg = getattr(sock, "sendmsg", None)

    def send(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._send(data)
        except (OSError, ValueError) as exc:
            raise map_oserror(exc, "sending") from exc

    def send_parts(self, head: bytes, payload: bytes | bytearray | memoryview) -> None:
        try:
            if len(payload) < GATHER_THRESHOLD or self._sendmsg is None:
                self._send(head + payload)
                return
            sent = self._sendmsg([head, payload])
            if sent < len(head):  # finish what a partial gathering send left
                self._send(head[sent:])
                self._send(payload)
            elif sent < len(head) + len(payload):
                self._send(memoryview(payload)[sent - len(head) :])
        except (OSError, ValueError) as exc:
            raise map_oserror(exc, "sending") from exc

    def recv_into(self, buffer: memoryview) -> int:
        while True:
            try:
                return self._recv_into(buffer)
            except socket.timeout as exc:
                raise errors.TimeoutError("receiving: timeout") from exc
            except OSError as exc:
                if exc.errno in _RETRY_ERRNOS:
                    continue
                raise map_oserror(exc, "receiving") from exc
            except ValueError as exc:  # closed socket
                raise errors.ConnectionClosedError("receiving: connection closed") from exc

    def close(self) -> None:
        if self.keep_open:
            return
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def fileno(self) -> int:
        return self.sock.fileno()

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout or None)

    def gettimeout(self) -> float | None:
        return self.sock.gettimeout()

    def getpeercert(self) -> dict | None:
        getcert = getattr(self.sock, "getpeercert", None)
        return getcert() if getcert else None

    @property
    def peer(self) -> Any:
        try:
            return self.sock.getpeername()
        except OSError:
            return None

    @property
    def family(self) -> str:
        return {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}.get(self.sock.family, "Unix")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self.sock.fileno()} peer={self.peer!r}>"


class Listener(ABC):
    """A bound, listening endpoint that accepts Connections."""

    #: the location string put into URIs, e.g. ``localhost:5555`` or ``./u:/tmp/sock``
    location: str

    @abstractmethod
    def accept(self) -> Connection | None:
        """Accept one pending connection (None when the accept was spurious)."""

    @abstractmethod
    def fileno(self) -> int:
        """A selectable fd that becomes readable when a connection is pending."""

    @abstractmethod
    def close(self) -> None:
        """Stop listening and release the address (e.g. remove a unix socket file)."""

    @property
    def sock(self) -> socket.socket | None:
        """The listening socket, when there is one."""
        return None

    @property
    def port(self) -> int | None:
        """The bound port, for IP transports."""
        return None


class SocketListener(Listener):
    """A Listener over a listening socket; accepted sockets become SocketConnections."""

    def __init__(self, sock: socket.socket, location: str, config: Config) -> None:
        self._sock = sock
        self.location = location
        self.config = config

    def accept(self) -> Connection | None:
        try:
            csock, _addr = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if exc.errno in _RETRY_ERRNOS or exc.errno in (errno.ECONNABORTED, errno.EMFILE, errno.ENFILE):
                return None
            raise map_oserror(exc, "accepting") from exc
        return self.wrap(csock)

    def wrap(self, csock: socket.socket) -> Connection:
        """Turn an accepted socket into a Connection (transports override to set options or TLS)."""
        csock.setblocking(True)
        timeout = self.config.COMMTIMEOUT
        if timeout:
            csock.settimeout(timeout)
        return SocketConnection(csock)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    @property
    def sock(self) -> socket.socket:
        return self._sock

    @property
    def port(self) -> int | None:
        try:
            name = self._sock.getsockname()
        except OSError:
            return None
        return name[1] if isinstance(name, tuple) else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location}>"


class Transport(ABC):
    """Base class of transport plugins. ``location_kind`` is ``tcp`` or the KIND of ``./KIND:address``."""

    location_kind: ClassVar[str]

    def __init__(self, config: Config) -> None:
        self.config = config

    @abstractmethod
    def connect(self, uri: URI, timeout: float | None = None) -> Connection:
        """Open a connection to the location in ``uri``; CommunicationError when it cannot."""

    @abstractmethod
    def listen(self, host: str | None = None, port: int = 0, address: str | None = None) -> Listener:
        """Bind and listen: ``host``/``port`` for IP transports, ``address`` for path-like ones."""
