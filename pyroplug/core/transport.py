"""The Transport plugin contract: Transport, Listener and Connection, and OSError -> CommunicationError.

A transport turns a URI location into a connected :class:`Connection` (client side) and a bind request
into a :class:`Listener` (server side). Socket-based transports reuse :class:`SocketConnection` and
:class:`SocketListener`, which hold all of pyroplug's socket I/O on the message path.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pyroplug.core import errors
from pyroplug.core.protocol import Message, MessageReader

if TYPE_CHECKING:
    from pyroplug.core.config import Config
    from pyroplug.core.uri import URI

__all__ = [
    "LISTEN_BACKLOG",
    "Connection",
    "FamilyName",
    "Listener",
    "SocketConnection",
    "SocketListener",
    "Transport",
    "family_name",
    "map_oserror",
]

#: payloads at least this large are sent with a gathering sendmsg instead of being concatenated
GATHER_THRESHOLD = 65536
#: listen backlog of server sockets: large enough for a burst of 1,000+ simultaneous connects
LISTEN_BACKLOG = max(1024, socket.SOMAXCONN)
_RETRY_ERRNOS = {errno.EINTR, errno.EAGAIN, errno.EWOULDBLOCK}
#: accept() errors that only concern the one connection being accepted
_ACCEPT_SKIP_ERRNOS = _RETRY_ERRNOS | {errno.ECONNABORTED, errno.EPROTO, errno.ECONNRESET}
#: accept() errors that mean the process is out of descriptors: the server should back off briefly
_ACCEPT_EXHAUSTED_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
log = logging.getLogger(__name__)


def receive_error(exc: BaseException) -> errors.CommunicationError | None:
    """The pyroplug error for an exception a socket receive raised; None for one to retry (EINTR, EAGAIN)."""
    if isinstance(exc, TimeoutError):  # the builtin (socket.timeout)
        return errors.TimeoutError("receiving: timeout")
    if isinstance(exc, ValueError):  # closed socket
        return errors.ConnectionClosedError("receiving: connection closed")
    if isinstance(exc, OSError) and exc.errno in _RETRY_ERRNOS:
        return None
    return map_oserror(exc, "receiving")


def map_oserror(exc: BaseException, doing: str) -> errors.CommunicationError:
    """Translate a socket-level exception into the matching pyroplug CommunicationError."""
    if isinstance(exc, socket.timeout):
        return errors.TimeoutError(f"{doing}: timeout")
    if isinstance(exc, (ConnectionError, EOFError)):
        return errors.ConnectionClosedError(f"{doing}: connection lost: {exc}")
    return errors.ConnectionClosedError(f"{doing}: {exc}")


class FamilyName(str):
    """An address-family name (``IPv4``, ``IPv6``, ``Unix``) that can also be called.

    :attr:`Connection.family` is a property, while Pyro4's ``SocketConnection.family()`` is a method;
    a callable ``str`` serves both spellings without a second name.
    """

    __slots__ = ()

    def __call__(self) -> str:
        return str(self)


class _DefaultReader:
    """``Connection.reader`` until the connection's owner sets its own: a MessageReader with default limits,
    made on first access and stored on the instance (where later accesses find it directly)."""

    def __get__(self, conn: Any, owner: type | None = None) -> Any:
        if conn is None:
            return self
        reader = conn.__dict__["reader"] = MessageReader()
        return reader


class Connection(ABC):
    """A connected, ordered byte stream between a proxy and a daemon.

    ``reader`` is the connection's :class:`MessageReader`; ``pyroInstances`` holds session-mode
    instances and ``tracked_resources`` the resources registered with ``track_resource``.
    """

    #: made on first use when its owner (a proxy, a daemon) did not set one of its own
    reader = _DefaultReader()

    # per-connection state starts as these class attributes (set on the instance when it changes)
    _tracked: weakref.WeakSet[Any] | None = None
    keep_open: bool = False
    #: set by the daemon once the handshake succeeded
    handshaked: bool = False
    #: time.monotonic() of the last received bytes; maintained by the server type
    last_activity: float = 0.0
    #: the receiver the server type uses for this connection (see ServerType.receiver): None or 0 while
    #: there is none yet, False when there is none
    lane: Any = None
    #: the socket's own ``sendall`` when a whole message may be sent with it instead of :meth:`send_parts`
    #: (errors then mapped with :func:`map_oserror`); None for connections that send any other way
    plain_send: Callable[[bytes], None] | None = None

    def __init__(self) -> None:
        # (SocketConnection.__init__ sets this itself instead of calling here: keep the two alike)
        self.pyroInstances: dict[type, Any] = {}

    #: a hint for :meth:`close`: wake up threads blocked reading this connection (a socket is shut down
    #: first); a proxy, whose connection only the thread holding its lock uses, turns it off
    shutdown_on_close: bool = True

    @property
    def tracked_resources(self) -> weakref.WeakSet[Any]:
        """The resources registered with ``current_context.track_resource`` (made on first use)."""
        tracked = self._tracked
        if tracked is None:
            tracked = self._tracked = weakref.WeakSet()
        return tracked

    @tracked_resources.setter
    def tracked_resources(self, value: weakref.WeakSet[Any]) -> None:
        self._tracked = value

    def has_tracked_resources(self) -> bool:
        """True when resources are tracked on this connection (without making the set)."""
        return bool(getattr(self, "_tracked", None))

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

    def send_gather(self, head: bytes, parts: list[Any]) -> None:
        """Send an encoded message whose payload is a list of parts (see :func:`~pyroplug.core.protocol.encode_gather`).

        The default joins the parts; socket connections send them with one gathering ``sendmsg``.
        """
        self.send_parts(head, b"".join(parts))

    @abstractmethod
    def recv_into(self, buffer: memoryview) -> int:
        """Receive at most ``len(buffer)`` bytes into it; 0 means the peer closed the stream."""

    def plain_io(self) -> tuple[Callable[[bytes], None], Callable[[memoryview], int]] | None:
        """The ``sendall`` and ``recv_into`` of the socket itself, for callers that send whole messages and
        receive with them directly (mapping errors as :func:`map_oserror` and :func:`receive_error` do);
        None (the default) when the connection sends or receives in any other way."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Close the stream (idempotent)."""

    @abstractmethod
    def fileno(self) -> int:
        """A selectable file descriptor that becomes readable when data (or EOF) arrives."""

    def settimeout(self, timeout: float | None) -> None:  # noqa: B027 - optional, a no-op by default
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

    def buffered(self) -> int:
        """Bytes the transport already holds that readiness of :meth:`fileno` does not show (TLS records).

        Server types service the connection again, without waiting for the selector, while this is > 0.
        """
        return 0

    @property
    def family(self) -> FamilyName:
        """A short name of the address family, e.g. ``IPv4``, ``IPv6``, ``Unix`` (also callable, as in Pyro4)."""
        return FamilyName("???")

    # --- message helpers (the per-call path) -------------------------------------------
    def recv_message(self) -> Message:
        """Block until one whole message has arrived, and return it."""
        return self.reader.read_message(self.recv_into)

    def fill(self) -> None:
        """Receive whatever is available now (one read) into the reader; EOF raises ConnectionClosedError."""
        reader = self.reader
        n = self.recv_into(reader.get_buffer())
        if not n:
            raise errors.ConnectionClosedError("receiving: connection closed")
        reader.buffer_updated(n)

    def receive(self) -> Message | None:
        """:meth:`fill`, then take the first complete message out of the reader (None: not complete yet).

        Server types call this when the connection is readable; the other messages the read completed
        are then taken with ``reader.next_message()``.
        """
        self.fill()
        return self.reader.next_message()

    # Pyro4's SocketConnection names (methods, so that subclasses' overrides are used)
    def setTimeout(self, timeout: float | None) -> None:  # noqa: N802
        """Pyro4 spelling of :meth:`settimeout`."""
        self.settimeout(timeout)

    def getTimeout(self) -> float | None:  # noqa: N802
        """Pyro4 spelling of :meth:`gettimeout`."""
        return self.gettimeout()


def set_receive_timeout(sock: socket.socket, seconds: float) -> bool:
    """Set SO_RCVTIMEO: a blocking receive on ``sock`` then fails with EAGAIN after ``seconds`` without
    data (Linux rounds up to the scheduler tick). False when the platform or socket does not allow it."""
    option = getattr(socket, "SO_RCVTIMEO", None)
    if option is None:
        return False
    whole = int(seconds)
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", whole, int((seconds - whole) * 1e6)))
    except (OSError, ValueError, struct.error):
        return False
    return True


def receive_timeout(sock: socket.socket) -> float:
    """The SO_RCVTIMEO of ``sock`` in seconds (0.0: none, or unknown)."""
    option = getattr(socket, "SO_RCVTIMEO", None)
    if option is None:
        return 0.0
    try:
        whole, micro = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("ll")))
    except (OSError, ValueError, struct.error):
        return 0.0
    return whole + micro / 1e6


class SocketConnection(Connection):
    """A Connection over a connected stream socket (TCP, unix, socketpair, TLS)."""

    def __init__(self, sock: socket.socket, keep_open: bool = False) -> None:
        self.pyroInstances = {}  # (Connection.__init__, inline: one connection per proxy connect)
        self.sock = sock
        if keep_open:
            self.keep_open = True
        self._send = sock.sendall
        self._recv_into = sock.recv_into
        self._pending = getattr(sock, "pending", None)  # SSLSocket: decrypted bytes not yet read
        # an SSLSocket's sendmsg always fails (TLS records cannot gather): gathering sends are plain-socket only
        self._sendmsg = None if self._pending is not None else getattr(sock, "sendmsg", None)
        if self._pending is None and type(self).send_parts is SocketConnection.send_parts:
            self.plain_send = self._send

    #: the reader may read from the socket directly (no subclass changed how this connection receives)
    _direct: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._direct = cls.recv_into is SocketConnection.recv_into and cls.fill is Connection.fill

    #: the receive timeout in effect (see :meth:`set_receive_wait`; 0.0: none)
    receive_wait: float = 0.0

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

    def send_gather(self, head: bytes, parts: list[Any]) -> None:
        buffers = [head, *parts]
        try:
            if self._sendmsg is None:
                for buffer in buffers:
                    self._send(buffer)
                return
            sent = self._sendmsg(buffers)
            for buffer in buffers:  # finish what a partial gathering send left
                size = len(buffer)
                if sent >= size:
                    sent -= size
                    continue
                self._send(memoryview(buffer)[sent:] if sent else buffer)
                sent = 0
        except (OSError, ValueError) as exc:
            raise map_oserror(exc, "sending") from exc

    def recv_into(self, buffer: memoryview) -> int:
        while True:
            try:
                return self._recv_into(buffer)
            except (OSError, ValueError) as exc:
                error = receive_error(exc)
                if error is not None:
                    raise error from exc

    def plain_io(self) -> tuple[Callable[[bytes], None], Callable[[memoryview], int]] | None:
        """See :meth:`Connection.plain_io`: None for TLS, subclasses that send or receive their own way
        and wrapped methods."""
        own = self.__dict__
        send = self.plain_send
        if (send is None or not type(self)._direct or "send_parts" in own or "recv_message" in own
                or "recv_into" in own):
            return None
        return send, self._recv_into

    # the per-call path: the reader reads from the socket itself; errors are mapped as in recv_into
    def recv_message(self) -> Message:
        if not self._direct:
            return self.reader.read_message(self.recv_into)
        reader = self.reader
        read_some = reader.read_some
        recv_into = self._recv_into
        while True:
            try:
                msg = read_some(recv_into)
                while msg is None:
                    msg = read_some(recv_into)
                return msg
            except errors.ConnectionClosedError:
                if reader.pending:
                    raise errors.ConnectionClosedError("receiving: not enough data") from None
                raise
            except (OSError, ValueError) as exc:
                error = receive_error(exc)
                if error is not None:
                    raise error from exc

    def receive(self) -> Message | None:
        if not self._direct:
            self.fill()
            return self.reader.next_message()
        read_some = self.reader.read_some
        while True:
            try:
                return read_some(self._recv_into)
            except BlockingIOError:  # nothing arrived (a receive timeout set on the socket itself)
                return None
            except (OSError, ValueError) as exc:
                error = receive_error(exc)
                if error is not None:
                    raise error from exc

    def set_receive_wait(self, seconds: float) -> bool:
        """Let a blocking :meth:`receive` wait at most ``seconds`` for data (then it returns None), with a
        receive timeout on the socket itself, so that waiting and reading is one system call.

        Only for a blocking socket without a Python-level timeout whose reads go straight to the socket;
        returns False (nothing changed) otherwise.
        """
        if self.receive_wait == seconds:
            return True
        if not self._direct or self._pending is not None:
            return False
        try:
            if self.sock.gettimeout() is not None:
                return False
        except (OSError, ValueError):
            return False
        if not set_receive_timeout(self.sock, seconds):
            return False
        self.receive_wait = seconds
        return True

    def close(self) -> None:
        if self.keep_open:
            return
        if self.shutdown_on_close:
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

    def buffered(self) -> int:
        pending = self._pending
        if pending is None:
            return 0
        try:
            return int(pending())
        except (OSError, ValueError):
            return 0

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
    def family(self) -> FamilyName:
        return FamilyName(family_name(self.sock))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self.sock.fileno()} peer={self.peer!r}>"


def family_name(sock: socket.socket) -> str:
    """``IPv4``, ``IPv6``, ``Unix`` or ``???`` for a socket's address family."""
    family = sock.family
    if family == socket.AF_INET:
        return "IPv4"
    if family == socket.AF_INET6:
        return "IPv6"
    if family == getattr(socket, "AF_UNIX", None):
        return "Unix"
    return "???"


class Listener(ABC):
    """A bound, listening endpoint that accepts Connections."""

    #: the location string put into URIs, e.g. ``localhost:5555`` or ``./u:/tmp/sock``
    location: str
    #: :meth:`accept` may run in several threads at once, and :meth:`fileno` stays readable while a
    #: connection is pending: a server type may then let its idle threads accept (the thread server does)
    concurrent_accept: ClassVar[bool] = False

    @abstractmethod
    def accept(self) -> Connection | None:
        """Accept one pending connection; None when none is pending. Never blocks.

        Server types call this in a loop after the listener became readable, until it returns None.
        Raises CommunicationError when the listener is unusable (closed) or the process ran out of
        file descriptors; a server logs that and backs off briefly.
        """

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
    """A Listener over a listening socket; accepted sockets become SocketConnections.

    The listening socket is switched to non-blocking mode, so :meth:`accept` never blocks.
    """

    concurrent_accept: ClassVar[bool] = True  # the kernel's accept queue

    def __init__(self, sock: socket.socket, location: str, config: Config) -> None:
        sock.setblocking(False)
        self._sock = sock
        self.location = location
        self.config = config
        # socket.accept() converts family and type to enums for every connection: done once here
        self._raw_accept = getattr(sock, "_accept", None)
        self._family, self._type, self._proto = int(sock.family), int(sock.type), sock.proto

    #: the receive wait (seconds) accepted connections start with, 0.0 for none (see set_receive_wait)
    receive_wait: float = 0.0

    def set_receive_wait(self, seconds: float) -> bool:
        """Let connections accepted from now on start with ``seconds`` as their receive wait (see
        :meth:`SocketConnection.set_receive_wait`) where that costs no system call per connection.

        False (nothing changed) where it would; server types then set it per connection.
        """
        return False

    def _accept_socket(self) -> tuple[socket.socket, Any]:
        raw = self._raw_accept
        if raw is None:  # a socket-like object without the socket module's internals
            return self._sock.accept()
        fd, addr = raw()
        return socket.socket(self._family, self._type, self._proto, fileno=fd), addr

    def accept(self) -> Connection | None:
        try:
            csock, addr = self._accept_socket()
        except (TimeoutError, BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if exc.errno in _ACCEPT_SKIP_ERRNOS:
                return None
            if exc.errno in _ACCEPT_EXHAUSTED_ERRNOS:
                raise errors.CommunicationError(f"accepting: out of resources: {exc}") from exc
            raise map_oserror(exc, "accepting") from exc
        except ValueError as exc:  # the listening socket was closed
            raise errors.ConnectionClosedError("accepting: listener closed") from exc
        try:
            conn = self.wrap(csock)
            conn.peer_address = addr  # type: ignore[attr-defined]
            return conn
        except OSError as exc:  # the peer vanished while we set options on its socket
            log.debug("accepted connection unusable: %s", exc)
            csock.close()
            return None

    def wrap(self, csock: socket.socket) -> Connection:
        """Turn an accepted socket into a Connection (transports override to set options or TLS).

        The socket is blocking, with COMMTIMEOUT as its timeout when that is set.
        """
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
        """Open a connection to the location in ``uri``; CommunicationError when it cannot.

        ``timeout`` bounds the connect and becomes the connection's send/receive timeout;
        None means the config's COMMTIMEOUT, and 0 means blocking without a timeout.
        """

    @abstractmethod
    def listen(self, host: str | None = None, port: int = 0, address: str | None = None) -> Listener:
        """Bind and listen: ``host``/``port`` for IP transports, ``address`` for path-like ones.

        Raises CommunicationError when the address cannot be bound.
        """
