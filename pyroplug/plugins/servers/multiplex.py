"""The ``multiplex`` server type: one thread, one selector, every call handled in turn.

The listener, a wakeup socketpair and every connection are registered in one
:class:`selectors.DefaultSelector`. A connection is read only after the selector reports it
readable, once per readiness, so a client that sends half a message (slowloris) or garbage never
blocks the others: partial data waits in the connection's reader. Housekeeping (the handler's, and
closing connections that received nothing for COMMTIMEOUT seconds) runs about every POLLTIMEOUT.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pyroplug.core import errors
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.servertype import RequestHandler, ServerType, fileno_of

if TYPE_CHECKING:
    from pyroplug.core.config import Config
    from pyroplug.core.transport import Connection, Listener

__all__ = ["MultiplexServer", "pyroplug_server_types"]

log = logging.getLogger(__name__)
_monotonic = time.monotonic

_LISTENER = "listener"
_WAKE = "wake"


class MultiplexServer(ServerType):
    """Single-threaded, selector-driven server type (Pyro4's ``multiplex``)."""

    name: ClassVar[str] = "multiplex"
    #: at most this many connections are accepted per readiness of the listener
    ACCEPT_BATCH: ClassVar[int] = 256
    #: how long close() waits for a loop running in another thread to return
    CLOSE_WAIT: ClassVar[float] = 2.0

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._selector: selectors.BaseSelector = selectors.DefaultSelector()
        self._owns_selector = True
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._conns: dict[int, Connection] = {}
        self._listener_fd = -1
        self._shutdown = False
        self._closed = False
        self._combined: list[Any] = []
        self._next_housekeeping = 0.0
        self._loop_thread: int | None = None
        self._loop_done = threading.Event()
        self._loop_done.set()
        self._servicing: Connection | None = None  # the connection whose messages are being handled

    # --- setup -------------------------------------------------------------------------------
    def init(self, handler: RequestHandler, listener: Listener) -> None:
        super().init(handler, listener)
        self._listener_fd = listener.fileno()
        self._selector.register(self._wake_r, selectors.EVENT_READ, (self, _WAKE))
        self._selector.register(listener.sock or listener, selectors.EVENT_READ, (self, _LISTENER))
        self._next_housekeeping = _monotonic() + self.housekeeping_interval

    @property
    def selector(self) -> selectors.BaseSelector:
        """The selector this server (and any combined server) is registered in."""
        return self._selector

    # --- the loop ----------------------------------------------------------------------------
    def loop(self, loop_condition: Callable[[], bool] = lambda: True) -> None:
        """Select and dispatch until shutdown() or ``loop_condition()`` is False."""
        self._loop_thread = threading.get_ident()
        self._loop_done.clear()
        try:
            while not self._shutdown and loop_condition():
                timeout = max(0.0, self._next_housekeeping - _monotonic())
                try:
                    ready = self._selector.select(timeout)
                except (OSError, ValueError):
                    if self._closed:
                        break
                    raise
                for key, _mask in ready:
                    owner, target = key.data
                    if owner is self or isinstance(owner, MultiplexServer):
                        owner._dispatch(target)
                    else:
                        self._foreign_events(owner, [key.fileobj])
                    if self._closed:
                        return
                self._maybe_housekeep()
        finally:
            self._loop_thread = None
            self._loop_done.set()

    def events(self, eventsockets: Iterable[Any]) -> None:
        """Process the given ready sockets (listener, connections, their sockets or fds) once."""
        for obj in eventsockets:
            if self._shutdown:
                return
            fd = fileno_of(obj)
            if fd < 0:
                continue
            if fd == self._listener_fd:
                self._dispatch(_LISTENER)
            elif fd in self._conns:
                self._dispatch(self._conns[fd])
            else:
                key = self._selector.get_map().get(fd) if not self._closed else None
                if key is not None:
                    owner, target = key.data
                    if isinstance(owner, MultiplexServer):
                        owner._dispatch(target)
                    else:
                        self._foreign_events(owner, [key.fileobj])
        self._maybe_housekeep()

    @property
    def sockets(self) -> list[Any]:
        """The listener's socket and every connection's socket (for a foreign select loop)."""
        result: list[Any] = []
        if self.listener is not None and not self._closed:
            result.append(self.listener.sock or self.listener)
        result.extend(getattr(conn, "sock", conn) for conn in self._conns.values())
        for other in self._combined:
            result.extend(other.sockets)
        return result

    @property
    def connections(self) -> list[Connection]:
        return list(self._conns.values())

    # --- dispatch ----------------------------------------------------------------------------
    def _dispatch(self, target: Any) -> None:
        if target is _WAKE:
            self._drain_wake()
        elif target is _LISTENER:
            self._accept_pending()
        else:
            self._handle(target)

    def _accept_pending(self) -> None:
        listener, handler = self.listener, self.handler
        assert listener is not None and handler is not None
        for _ in range(self.ACCEPT_BATCH):
            if self._shutdown:
                return
            try:
                conn = listener.accept()
            except errors.CommunicationError as exc:
                if not self._closed:
                    log.warning("accept failed: %s", exc)
                    time.sleep(0.01)  # out of descriptors: give the clients a moment to go away
                return
            if conn is None:
                return
            conn.last_activity = _monotonic()
            try:
                handler.connection_opened(conn)
                key = self._selector.register(conn, selectors.EVENT_READ, (self, conn))
            except Exception as exc:
                self.service_failed(conn, exc)
                continue
            self._conns[key.fd] = conn

    def _handle(self, conn: Connection) -> None:
        self._servicing = conn
        try:
            self.service(conn)
            while conn.buffered():
                self.service(conn)
        except KeyboardInterrupt:  # Ctrl-C stops the loop; the connection is closed with the server
            raise
        except BaseException as exc:  # noqa: B036 - a handler error (even SystemExit) closes its connection only
            self._forget(conn)
            self.service_failed(conn, exc)
            return
        finally:
            self._servicing = None
        if self._closed:  # close() gave up waiting for this call and left the connection to us
            self._forget(conn)
            self.drop(conn)

    def _foreign_events(self, owner: Any, objs: Sequence[Any]) -> None:
        try:
            owner.events(list(objs))
        except Exception:
            log.warning("error in events() of combined server %r", owner, exc_info=True)

    def _forget(self, conn: Connection) -> None:
        """Unregister ``conn`` (still open or not) from the selector and the connection table."""
        try:
            key = self._selector.unregister(conn)
            self._conns.pop(key.fd, None)
            return
        except (KeyError, ValueError, RuntimeError):
            pass
        for fd, known in list(self._conns.items()):
            if known is conn:
                del self._conns[fd]

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _maybe_housekeep(self) -> None:
        now = _monotonic()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + self.housekeeping_interval
        if self.config.COMMTIMEOUT > 0:
            for conn in list(self._conns.values()):
                if self.expired(conn, now):
                    log.info("closing %r: nothing received for COMMTIMEOUT (%ss)", conn, self.config.COMMTIMEOUT)
                    self._forget(conn)
                    self.drop(conn)
        self.call_housekeeping()
        for other in self._combined:
            if isinstance(other, MultiplexServer):
                other._maybe_housekeep()

    # --- combining ---------------------------------------------------------------------------
    def combine_loop(self, server: Any) -> None:
        """Serve ``server`` from this loop: another multiplex server, or any object with ``sockets``/``events``."""
        if server is self:
            raise ValueError("cannot combine a server with itself")
        if isinstance(server, MultiplexServer):
            server._move_to(self._selector)
        else:
            for sock in server.sockets:
                self._selector.register(sock, selectors.EVENT_READ, (server, sock))
            try:
                server.selector = self._selector
            except (AttributeError, TypeError):
                pass
        self._combined.append(server)

    def _move_to(self, selector: selectors.BaseSelector) -> None:
        """Re-register everything in ``selector`` and use it from now on (it belongs to another server)."""
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
            selector.register(key.fileobj, key.events, key.data)
        if self._owns_selector:
            self._selector.close()
        self._selector = selector
        self._owns_selector = False

    # --- stopping ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Make loop() return soon; safe from any thread and from inside a handler."""
        self._shutdown = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (a wakeup is pending anyway) or already closed
            pass

    def close(self) -> None:
        """Close every connection and the listener; waits (bounded) for a loop in another thread."""
        if self._closed:
            return
        self._shutdown = True
        self._wake()
        if self._loop_thread is not None and self._loop_thread != threading.get_ident():
            if not self._loop_done.wait(self.CLOSE_WAIT):
                log.warning("closing while the request loop is still busy in a handler")
        self._closed = True
        for conn in list(self._conns.values()):
            if conn is not self._servicing:  # a call still running: the loop closes its connection after it
                self._forget(conn)
                self.drop(conn)
        for other in self._combined:
            if isinstance(other, MultiplexServer):
                other.close()
        registered: list[Any] = [self._wake_r]
        if self.listener is not None:
            registered.append(self.listener.sock or self.listener)
        for fileobj in registered:
            try:
                self._selector.unregister(fileobj)
            except (KeyError, ValueError, RuntimeError):
                pass
        if self.listener is not None:
            self.listener.close()
        if self._owns_selector:
            self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def __repr__(self) -> str:
        location = getattr(self.listener, "location", None)
        return f"<{type(self).__name__} on {location}; {len(self._conns)} connections>"


@hookimpl
def pyroplug_server_types() -> Sequence[type[ServerType]]:
    """The multiplex server type."""
    return (MultiplexServer,)
