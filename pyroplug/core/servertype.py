"""The ServerType plugin contract: how a daemon waits for connections and feeds their messages in.

A server type owns the event loop. The daemon gives it a :class:`Listener` and itself as the
:class:`RequestHandler`; the server accepts connections, reads bytes into each connection's
``reader`` and hands every complete message to :meth:`RequestHandler.handle_message`, never
running two messages of one connection at the same time.

What a handler can rely on, whatever the server type:

* ``connection_opened(conn)`` runs once per accepted connection, before any byte of it is read,
  in the thread that accepts (the ``loop()``/``events()`` caller).
* ``handle_message`` calls of one connection never overlap; other connections' calls may run
  concurrently (``thread``) or not (``multiplex``).
* ``connection_closed(conn)`` runs exactly once per accepted connection (also when
  ``connection_opened`` raised), in whichever server thread closes it, after its last
  ``handle_message`` has returned.
* ``run_housekeeping()`` runs about every POLLTIMEOUT seconds (more often with a small COMMTIMEOUT),
  never concurrently with itself. Its exceptions, like those of ``connection_closed``, are logged.
* An exception from ``handle_message`` closes only that connection: CommunicationError and
  SecurityError quietly, anything else (even SystemExit) with a logged traceback.
"""

from __future__ import annotations

import logging
import select
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pyroplug.core import errors

if TYPE_CHECKING:
    from pyroplug.core.config import Config
    from pyroplug.core.protocol import Message
    from pyroplug.core.transport import Connection, Listener

__all__ = ["HANDLED", "RequestHandler", "ServerType", "fileno_of"]

#: what a handler's receiver (see :meth:`RequestHandler.receiver`) returns for what it served itself
HANDLED: Any = object()

log = logging.getLogger(__name__)
_monotonic = time.monotonic


def fileno_of(obj: Any) -> int:
    """The fd of a socket, Connection, Listener or int, as passed to ``events()``; -1 when closed or none."""
    if isinstance(obj, int):
        return obj
    try:
        return int(obj.fileno())
    except (OSError, ValueError, AttributeError, TypeError):
        return -1


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

    def receiver(self, conn: Connection) -> Callable[[], Any] | None:
        """Optional: a function that receives from the handshaked ``conn`` as ``conn.receive()`` does (one
        read; the first complete message, or None), except that a plain call arriving on its own is
        handled by the function itself, which then returns :data:`HANDLED`; None when the handler has
        none for ``conn``. Server types get it through :meth:`ServerType.receiver`."""

    def run_housekeeping(self) -> None:
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

    def preset_receive_wait(self, seconds: float) -> None:
        """Ask the listener to give the connections it accepts ``seconds`` as their receive wait (see
        ``SocketConnection.set_receive_wait``) where that saves a system call per connection; not with
        COMMTIMEOUT (its timeouts rule the sockets then)."""
        setter = getattr(self.listener, "set_receive_wait", None)
        if setter is not None and self.config.COMMTIMEOUT <= 0:
            setter(seconds)

    def receiver(self, conn: Connection) -> Callable[[], Any]:
        """What to receive ``conn``'s messages with: ``conn.receive``, or once the connection is handshaked
        and asks again (a connection closed after its first call never needs more), the handler's
        receiver for it, made once and kept as ``conn.lane``. What a receiver returns besides a Message
        or None is :data:`HANDLED` (the message was handled already)."""
        lane = conn.lane
        if lane:
            return lane  # type: ignore[no-any-return]
        if lane is None:  # not asked since the handshake
            if conn.handshaked:
                conn.lane = 0
            return conn.receive
        if lane is not False:  # asked again: make it
            make = getattr(self.handler, "receiver", None)
            conn.lane = lane = (make(conn) if make is not None else None) or False
        return lane or conn.receive

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

    def defers_calls(self) -> bool:
        """True while this server type holds back calls it reads (e.g. multiplex, while a call waits for a
        remote reply). The handler then leaves a call that arrived with a handshake to the server type
        instead of running it along with the handshake."""
        return False

    def combine_loop(self, server: Any) -> None:
        """Serve ``server`` (another server type, or anything with ``sockets`` and ``events``) from this loop.

        Only server types with a single selector can do this (Pyro4: multiplex only).
        """
        raise TypeError(f"the {self.name!r} server type can't combine event loops; use 'multiplex'")

    def service(self, conn: Connection) -> None:
        """Read what is available on ``conn`` (one read) and handle every complete message in it.

        Updates ``conn.last_activity``. Raises CommunicationError (or SecurityError) when the
        connection is to be closed; the caller then uses :meth:`service_failed`.
        """
        msg = conn.receive()
        conn.last_activity = _monotonic()
        if msg is not None:
            self.handle(conn, msg)

    def handle(self, conn: Connection, msg: Message) -> None:
        """Handle ``msg``, received on ``conn``, then every further complete message in its reader.

        Updates ``conn.last_activity`` when done (a long call is activity too: COMMTIMEOUT counts from
        its end).
        """
        handler = self.handler
        assert handler is not None
        next_message = conn.reader.next_message
        current: Message | None = msg
        while current is not None:
            handler.handle_message(conn, current)
            current = next_message()
        conn.last_activity = _monotonic()

    def drop(self, conn: Connection) -> None:
        """Close ``conn`` and tell the daemon; never raises."""
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a broken close must not stop the server
            log.debug("error closing %r", conn, exc_info=True)
        if self.handler is not None:
            try:
                self.handler.connection_closed(conn)
            except Exception:
                log.warning("error in connection_closed for %r", conn, exc_info=True)

    #: connections accepted per readiness of the listener, at most
    ACCEPT_BATCH: ClassVar[int] = 256

    def accept_pending(self, adopt: Callable[[Connection], None]) -> None:
        """Accept up to ACCEPT_BATCH pending connections (see :meth:`accept_one`), handing each to
        ``adopt`` (register it, queue it, ...). A failing ``adopt`` drops only that connection."""
        for _ in range(self.ACCEPT_BATCH):
            conn = self.accept_one()
            if conn is None:
                return
            try:
                adopt(conn)
            except Exception as exc:
                self.service_failed(conn, exc)

    def accept_one(self) -> Connection | None:
        """Accept one pending connection, stamped and shown to the handler (``connection_opened``); None
        when none is pending or the server shuts down. One the handler fails on is dropped and the next
        pending one taken; running out of descriptors is logged (retried on the next readiness)."""
        listener, handler = self.listener, self.handler
        assert listener is not None and handler is not None
        while not getattr(self, "_shutdown", False):
            try:
                conn = listener.accept()
            except errors.CommunicationError as exc:
                if not getattr(self, "_closed", False):
                    log.warning("accept failed: %s", exc)
                    time.sleep(0.01)  # out of descriptors: give the clients a moment to go away
                return None
            if conn is None:
                return None
            conn.last_activity = time.monotonic()
            try:
                handler.connection_opened(conn)
            except Exception as exc:
                self.service_failed(conn, exc)
                continue
            return conn
        return None

    def service_failed(self, conn: Connection, exc: BaseException) -> None:
        """Log why servicing ``conn`` failed, at a level that fits the cause, and :meth:`drop` it."""
        if isinstance(exc, errors.TimeoutError):
            log.warning("closing %r: %s", conn, exc)
        elif isinstance(exc, (errors.ConnectionClosedError, ConnectionError)):
            log.debug("client went away: %r: %s", conn, exc)
            conn.shutdown_on_close = False  # nothing left to wake or tell: close() alone will do
        elif isinstance(exc, (errors.CommunicationError, errors.SecurityError, OSError)):
            log.info("closing %r: %s: %s", conn, type(exc).__name__, exc)
        else:
            log.warning("closing %r after an error in the request handler", conn, exc_info=exc)
        self.drop(conn)

    def call_housekeeping(self) -> None:
        """Run the handler's periodic maintenance; errors are logged, never raised."""
        handler = self.handler
        if handler is not None:
            try:
                handler.run_housekeeping()
            except Exception:
                log.warning("error in housekeeping", exc_info=True)

    @property
    def housekeeping_interval(self) -> float:
        """Seconds between housekeeping runs: POLLTIMEOUT, shortened so COMMTIMEOUT is enforced in time."""
        interval = self.config.POLLTIMEOUT if self.config.POLLTIMEOUT > 0 else 2.0
        commtimeout = self.config.COMMTIMEOUT
        if commtimeout > 0:
            interval = min(interval, max(commtimeout / 4, 0.02))
        return interval

    def expired(self, conn: Connection, now: float) -> bool:
        """True when COMMTIMEOUT is set and ``conn`` received nothing for longer (idle or mid-message).

        A connection with unread bytes waiting is not expired: the server just has not read them yet
        (it was busy with a long call).
        """
        commtimeout = self.config.COMMTIMEOUT
        if commtimeout <= 0 or now - conn.last_activity <= commtimeout:
            return False
        try:
            readable, _, _ = select.select([conn], [], [], 0)
        except (OSError, ValueError):
            return True
        return not readable

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {getattr(self.listener, 'location', None)}>"
