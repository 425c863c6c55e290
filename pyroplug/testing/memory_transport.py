"""An in-process transport for tests: ``./mem:NAME`` locations, built on ``socket.socketpair()``.

It is written the way a third-party transport would be: it uses the public :mod:`pyroplug.plugin` and
:mod:`pyroplug.errors` modules, and is registered explicitly::

    from pyroplug.testing import memory_transport
    pm.register(memory_transport, name="memory-transport")

Listeners live in a process-wide table by name. :meth:`MemoryTransport.connect` makes a socketpair,
queues one end on the listener, and the listener's wakeup socketpair holds one byte while any
connection is queued, so :meth:`~MemoryListener.fileno` is readable exactly while connections are
pending and any selector-based server type can serve it. Accepted ends are ordinary stream sockets, so the server
types' readiness handling works unchanged.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pyroplug.errors import CommunicationError
from pyroplug.plugin import Connection, FamilyName, Listener, SocketConnection, Transport, hookimpl

if TYPE_CHECKING:
    from pyroplug.core.uri import URI
    from pyroplug.plugin import Config

__all__ = ["MemoryConnection", "MemoryListener", "MemoryTransport", "listeners", "pyroplug_transports"]

log = logging.getLogger(__name__)

_table_lock = threading.Lock()
_listeners: dict[str, MemoryListener] = {}
_counter = 0


def listeners() -> list[str]:
    """The names that currently have a listener."""
    with _table_lock:
        return sorted(_listeners)


class MemoryConnection(SocketConnection):
    """One end of a socketpair; its family is ``Memory``."""

    @property
    def family(self) -> FamilyName:
        return FamilyName("Memory")


class MemoryListener(Listener):
    """Pending socketpair ends for one name, with a wakeup socketpair as the selectable fd."""

    #: connects beyond this many unaccepted ones are refused, like a full listen backlog
    BACKLOG: ClassVar[int] = 4096
    concurrent_accept: ClassVar[bool] = True  # accept() takes the lock; the wakeup byte stays while any wait

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.location = "./mem:" + name
        self.config = config
        self._lock = threading.Lock()
        self._pending: collections.deque[socket.socket] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._closed = False

    def enqueue(self, sock: socket.socket) -> None:
        """Queue the server end of a new connection; the wakeup socket holds one byte while any are queued."""
        with self._lock:
            if self._closed:
                raise CommunicationError(f"cannot connect to {self.location}: listener closed")
            if len(self._pending) >= self.BACKLOG:
                raise CommunicationError(f"cannot connect to {self.location}: backlog full")
            self._pending.append(sock)
            if len(self._pending) == 1:
                self._wake_w.send(b"c")

    def accept(self) -> Connection | None:
        with self._lock:
            if not self._pending:
                return None
            sock = self._pending.popleft()
            if not self._pending:
                try:
                    self._wake_r.recv(1)
                except OSError:
                    pass
        sock.setblocking(True)
        if self.config.COMMTIMEOUT:
            sock.settimeout(self.config.COMMTIMEOUT)
        return MemoryConnection(sock)

    def fileno(self) -> int:
        return self._wake_r.fileno()

    @property
    def sock(self) -> socket.socket:
        """The wakeup socket: readable while connections are pending."""
        return self._wake_r

    def close(self) -> None:
        with _table_lock:
            if _listeners.get(self.name) is self:
                del _listeners[self.name]
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending, self._pending = list(self._pending), collections.deque()
        for sock in pending:
            sock.close()
        self._wake_r.close()
        self._wake_w.close()

    def __repr__(self) -> str:
        return f"<MemoryListener {self.location}>"


class MemoryTransport(Transport):
    """The ``mem`` location kind: ``PYRO:obj@./mem:NAME``."""

    location_kind: ClassVar[str] = "mem"

    def connect(self, uri: URI, timeout: float | None = None) -> Connection:
        """Connect to the listener named ``uri.address``; CommunicationError when there is none."""
        name = uri.address
        with _table_lock:
            listener = _listeners.get(name or "")
        if listener is None:
            raise CommunicationError(f"cannot connect to ./mem:{name}: no listener with that name")
        client, server = socket.socketpair()
        try:
            listener.enqueue(server)
        except BaseException:
            client.close()
            server.close()
            raise
        if timeout is None:
            timeout = self.config.COMMTIMEOUT
        client.settimeout(timeout or None)
        return MemoryConnection(client)

    def listen(self, host: str | None = None, port: int = 0, address: str | None = None) -> Listener:
        """Create the listener ``address`` (None or '': a fresh unique name)."""
        global _counter
        with _table_lock:
            if not address:
                _counter += 1
                address = f"listener-{_counter}"
            if ":" in address:
                raise CommunicationError(f"invalid memory transport name {address!r} (no ':' allowed)")
            if address in _listeners:
                raise CommunicationError(f"cannot bind ./mem:{address}: name already in use")
            listener = MemoryListener(address, self.config)
            _listeners[address] = listener
        return listener


@hookimpl
def pyroplug_transports() -> Sequence[type[Transport]]:
    """The in-memory transport."""
    return (MemoryTransport,)
