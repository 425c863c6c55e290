"""The ServerType plugin contract: how a daemon waits for connections and feeds their messages in.

A server type owns the event loop. The daemon gives it a :class:`Listener` and itself as the
:class:`RequestHandler`; the server accepts connections, reads bytes into each connection's
``reader`` and hands every complete message to :meth:`RequestHandler.handle_message`, never
running two messages of one connection at the same time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pyroplug.core import errors

if TYPE_CHECKING:
    from pyroplug.core.config import Config
    from pyroplug.core.protocol import Message
    from pyroplug.core.transport import Connection, Listener

__all__ = ["RequestHandler", "ServerType"]


class RequestHandler(Protocol):
    """What a server type may call on its daemon."""

    def connection_opened(self, conn: Connection) -> None:
        """A new connection was accepted (set up its reader before any byte is read)."""

    def handle_message(self, conn: Connection, msg: Message) -> None:
        """Process one message (the handshake, a call or a ping) and send its reply, if any.

        Raises a CommunicationError or SecurityError when the connection must be closed.
        """

    def connection_closed(self, conn: Connection) -> None:
        """The connection is gone: drop its session instances, resources and streams."""

    def housekeeping(self) -> None:
        """Periodic maintenance, called about every POLLTIMEOUT seconds."""


class ServerType(ABC):
    """Base class of server-type plugins; ``name`` is the SERVERTYPE value that selects it."""

    name: ClassVar[str]

    def __init__(self, config: Config) -> None:
        self.config = config
        self.handler: RequestHandler | None = None
        self.listener: Listener | None = None

    def init(self, handler: RequestHandler, listener: Listener) -> None:
        """Attach the daemon and its listener. Called once, before any loop or events call."""
        self.handler = handler
        self.listener = listener

    @abstractmethod
    def loop(self, loop_condition: Callable[[], bool] = lambda: True) -> None:
        """Serve until :meth:`shutdown` is called or ``loop_condition()`` returns False."""

    @abstractmethod
    def events(self, eventsockets: Iterable[Any]) -> None:
        """Process the given ready sockets once (for use from a foreign event loop)."""

    @property
    @abstractmethod
    def sockets(self) -> list[Any]:
        """The sockets a foreign event loop should wait on (the listener and connections it owns)."""

    @abstractmethod
    def shutdown(self) -> None:
        """Make :meth:`loop` return soon; safe to call from any thread."""

    @abstractmethod
    def close(self) -> None:
        """Close every connection and the listener."""

    @property
    def connections(self) -> list[Connection]:
        """The currently open client connections (for diagnostics and tests)."""
        return []

    def service(self, conn: Connection) -> None:
        """Read what is available on ``conn`` (one read) and handle every complete message in it.

        Raises CommunicationError (or SecurityError) when the connection is to be closed.
        """
        conn.fill()
        handler = self.handler
        assert handler is not None
        reader = conn.reader
        msg = reader.next_message()
        while msg is not None:
            handler.handle_message(conn, msg)
            msg = reader.next_message()

    def drop(self, conn: Connection) -> None:
        """Close ``conn`` and tell the daemon; never raises."""
        try:
            conn.close()
        finally:
            if self.handler is not None:
                try:
                    self.handler.connection_closed(conn)
                except errors.PyroError:
                    pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {getattr(self.listener, 'location', None)}>"
