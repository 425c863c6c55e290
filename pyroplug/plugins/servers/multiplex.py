"""The ``multiplex`` server type: one thread, one selector, every call handled in turn.

The listener, a wakeup socketpair and every connection are registered in one selector: on Linux a
small :class:`selectors.BaseSelector` over ``select.epoll`` whose ready file descriptors the loop
reads straight from ``epoll.poll`` (one C call per iteration), elsewhere
:class:`selectors.DefaultSelector`. A connection is read only after the selector reports it
readable, once per readiness, so a client that sends half a message (slowloris) or garbage never
blocks the others: partial data waits in the connection's reader. Housekeeping (the handler's, and
closing connections that received nothing for COMMTIMEOUT seconds) runs about every POLLTIMEOUT.

**One call at a time, and re-entrant calls.** Calls (and housekeeping) run one at a time, as in
Pyro4. Pyro4's multiplex server deadlocks when a call waits for a remote call that calls back into
the same daemon (server method -> client callback -> server method): the only thread is busy
waiting, so the nested call is never read. Here a call that makes a remote call through a proxy
*yields* while it waits for the reply: if the reply takes longer than :attr:`MultiplexServer.REENTRY_DELAY`,
a helper thread takes the select loop over and serves

* the calls carrying the waiting call's correlation id (Pyro propagates it from a call to the
  calls made while running it, so a callback's calls back into this daemon carry it), and
* handshakes and pings;

every other call is deferred (its connection leaves the selector) until no call is waiting. So
independent calls still run strictly one after another; only a chain of re-entrant calls
interleaves, at its remote-call points, like coroutines at ``await``. When the reply arrives the
waiting call resumes as soon as the call then running finishes or yields itself; the loop returns
to the thread that runs ``loop()``. A nested call that does not carry the correlation id (made from
another thread, or after clearing ``current_context.correlation_id``) waits like an independent one.
"""

from __future__ import annotations

import collections
import logging
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pyroplug.core.context import current_context
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.protocol import MSG_INVOKE
from pyroplug.core.servertype import HANDLED, RequestHandler, ServerType, fileno_of
from pyroplug.core.workers import ElasticPool, call_gates

if TYPE_CHECKING:
    from pyroplug.core.config import Config
    from pyroplug.core.protocol import Message
    from pyroplug.core.transport import Connection, Listener

__all__ = ["MultiplexServer", "pyroplug_server_types"]

log = logging.getLogger(__name__)
_monotonic = time.monotonic

_LISTENER = "listener"
_WAKE = "wake"
#: threads that take a loop over while its call waits for a remote reply
_helpers = ElasticPool("pyroplug-multiplex-helper")
#: ready file descriptors taken from the selector per iteration, at most (epoll keeps the rest queued
#: in order and returns them next, so a busy loop still gets round to every connection)
_MAX_EVENTS = 256


def _fd_of(fileobj: Any) -> int:
    """The fd of ``fileobj`` (an int or anything with ``fileno()``); ValueError when it has none (closed)."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"invalid file descriptor: {fd}")
    return fd


class _KeyMap(Mapping[Any, selectors.SelectorKey]):
    """A read-only view of an :class:`EpollSelector`'s keys, looked up by fd or file object (as selectors do)."""

    __slots__ = ("_selector",)

    def __init__(self, selector: EpollSelector) -> None:
        self._selector = selector

    def __len__(self) -> int:
        return len(self._selector.keys)

    def __getitem__(self, fileobj: Any) -> selectors.SelectorKey:
        return self._selector.keys[self._selector._registered_fd(fileobj)]

    def __iter__(self) -> Iterator[int]:
        return iter(self._selector.keys)


class EpollSelector(selectors.BaseSelector):
    """A :class:`selectors.BaseSelector` over ``select.epoll`` that exposes its table to the loop.

    It behaves like :class:`selectors.EpollSelector` for everyone else (``register``, ``select``,
    ``get_map``, ...; a combined foreign server may use it), while the multiplex loop calls
    :attr:`poll` (the epoll object's own ``poll``: ``(fd, event mask)`` pairs) and looks the keys up in
    :attr:`keys` itself, skipping the per-call list of ``(key, events)`` that ``select()`` builds.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        #: fd -> SelectorKey of everything registered (read it, don't change it)
        self.keys: dict[int, selectors.SelectorKey] = {}
        self._map = _KeyMap(self)
        #: ``poll(timeout_seconds, maxevents)``: the ready ``(fd, epoll event mask)`` pairs
        self.poll: Callable[[float, int], list[tuple[int, int]]] = self._epoll.poll

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        if not events or events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE):
            raise ValueError(f"invalid events: {events!r}")
        fd = _fd_of(fileobj)
        if fd in self.keys:
            raise KeyError(f"{fileobj!r} (fd {fd}) is already registered")
        mask = (select.EPOLLIN if events & selectors.EVENT_READ else 0) | (
            select.EPOLLOUT if events & selectors.EVENT_WRITE else 0
        )
        self._epoll.register(fd, mask)
        key = self.keys[fd] = selectors.SelectorKey(fileobj, fd, events, data)
        return key

    def _registered_fd(self, fileobj: Any) -> int:
        """The fd ``fileobj`` is registered under (found by identity when it has none any more: closed)."""
        try:
            return _fd_of(fileobj)
        except ValueError:
            for key in self.keys.values():
                if key.fileobj is fileobj:
                    return key.fd
            raise KeyError(f"{fileobj!r} is not registered") from None

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        fd = self._registered_fd(fileobj)
        key = self.keys.pop(fd)  # KeyError when not registered, as selectors do
        try:
            self._epoll.unregister(fd)
        except OSError:  # closed already: the kernel forgot it
            pass
        return key

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            timeout = -1.0
        elif timeout < 0:
            timeout = 0.0
        ready = []
        keys = self.keys
        for fd, event in self.poll(timeout, max(len(keys), 1)):
            key = keys.get(fd)
            if key is not None:
                events = (selectors.EVENT_WRITE if event & ~select.EPOLLIN else 0) | (
                    selectors.EVENT_READ if event & ~select.EPOLLOUT else 0
                )
                ready.append((key, events & key.events))
        return ready

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._map

    def close(self) -> None:
        self._epoll.close()
        self.keys.clear()


def new_selector() -> selectors.BaseSelector:
    """An :class:`EpollSelector` where the platform has epoll, otherwise ``selectors.DefaultSelector()``."""
    if hasattr(select, "epoll"):
        return EpollSelector()
    return selectors.DefaultSelector()


class _Wait:
    """The remote call the loop's thread is waiting for (a helper takes the loop over if it takes long)."""

    __slots__ = ("thread", "server", "conn", "done")

    def __init__(self, thread: int, server: MultiplexServer, conn: Connection | None) -> None:
        self.thread = thread
        self.server = server
        self.conn = conn
        self.done = False


class _Gate:
    """Runs the calls of one multiplex loop (and the servers combined into it) one at a time.

    ``exec`` is held while a call (or housekeeping) runs; the *holder* thread runs the select loop.
    A call that makes a remote call releases ``exec`` while waiting for the reply (see
    :meth:`yield_during`); if the wait lasts longer than :attr:`MultiplexServer.REENTRY_DELAY`, a helper
    thread takes over the loop and serves the messages that carry the waiting call's correlation id
    (re-entrant calls: callbacks calling back in), plus handshakes and pings. Other calls are deferred
    until no call is waiting, so independent calls still run strictly one at a time.
    """

    def __init__(self, server: MultiplexServer) -> None:
        self.loop_server = server
        self.exec = threading.Lock()
        # bound once: acquire()/release() cost half of ``with exec:`` on the per-call path
        self.lock = self.exec.acquire
        self.unlock = self.exec.release
        self.cv = threading.Condition(threading.Lock())
        self.holder: int | None = None  # the thread running the select loop
        self.owner_waiting = False  # the loop()/events() caller wants the loop back
        self.running = False  # a loop()/events() is active: helpers may serve
        #: correlation ids of the calls waiting for a remote reply (their re-entrant calls may run)
        self.corrs: collections.Counter[bytes] = collections.Counter()
        #: (server, connection, first message) of calls deferred while other calls wait
        self.deferred: collections.deque[tuple[MultiplexServer, Connection, Message]] = collections.deque()
        self.serving: MultiplexServer | None = None  # the server whose _handle runs under exec
        self.pending: _Wait | None = None

    def yield_during(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` (a proxy's remote call) with ``exec`` released; re-acquire it after."""
        me = threading.get_ident()
        call_gates.pop(me, None)
        corr = current_context.correlation_id_bytes
        corr = bytes(corr) if corr else None
        wait: _Wait | None = None
        with self.cv:
            if corr is not None:
                self.corrs[corr] += 1
            if self.holder == me and self.running and self.serving is not None:
                server = self.serving
                wait = self.pending = _Wait(me, server, server._servicing)
        self.exec.release()
        try:
            if wait is not None:
                _helpers.submit(self._take_over, wait)
            return fn(*args)
        finally:
            if wait is not None:
                with self.cv:
                    wait.done = True
                    if self.pending is wait:
                        self.pending = None
                    self.cv.notify_all()
            self.exec.acquire()
            wake = False
            if corr is not None:
                with self.cv:
                    left = self.corrs[corr] - 1
                    if left:
                        self.corrs[corr] = left
                    else:
                        del self.corrs[corr]
                    wake = not self.corrs and bool(self.deferred)
            call_gates[me] = self
            if wake:
                self.loop_server._wake()

    def _take_over(self, wait: _Wait) -> None:
        """Helper job: if the loop's remote call is still waiting after REENTRY_DELAY, run the loop."""
        me = threading.get_ident()
        server = self.loop_server
        with self.cv:
            deadline = _monotonic() + server.REENTRY_DELAY
            while not wait.done:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    break
                self.cv.wait(remaining)
            if wait.done or self.holder != wait.thread or not self.running:
                return
            if wait.conn is not None:  # its connection leaves the selector until the call is over
                wait.server._suspend(wait.conn)
            self.pending = None
            self.holder = None
            self.cv.notify_all()
            if self.owner_waiting:  # the loop's owner takes it back itself
                return
            self.holder = me
        call_gates[me] = self
        try:
            while self.running and not self.owner_waiting and not server._shutdown:
                if not server._iterate(me):
                    return  # this helper's own call was taken over: another helper runs the loop
        finally:
            call_gates.pop(me, None)
            self.release(me)

    def acquire_loop(self, me: int) -> None:
        """Make ``me`` (the loop()/events() caller) the holder, waiting for a helper to give the loop back."""
        with self.cv:
            self.running = True
            if self.holder is None or self.holder == me:
                self.holder = me
                return
            self.owner_waiting = True
            try:
                while self.holder is not None:
                    self.loop_server._wake()
                    self.cv.wait(0.5)
                self.holder = me
            finally:
                self.owner_waiting = False

    def release(self, me: int, stop: bool = False) -> None:
        """Give up the loop (``stop``: the loop()/events() caller is done; helpers stop too)."""
        with self.cv:
            if stop:
                self.running = False
            if self.holder == me:
                self.holder = None
            self.cv.notify_all()


class MultiplexServer(ServerType):
    """Single-threaded, selector-driven server type (Pyro4's ``multiplex``)."""

    name: ClassVar[str] = "multiplex"
    #: at most this many connections are accepted per readiness of the listener
    #: how long close() waits for a loop running in another thread to return
    CLOSE_WAIT: ClassVar[float] = 2.0
    #: connections accepted per readiness of the listener: one (the level-triggered poll reports the
    #: next at once), so a lone new connection costs no failing accept
    ACCEPT_BATCH: ClassVar[int] = 1
    #: seconds a call may wait for a remote reply before a helper thread serves re-entrant calls
    REENTRY_DELAY: ClassVar[float] = 0.002
    #: with a single busy connection, its next request is awaited this long inside the read itself (one
    #: system call instead of a poll and a read) before the loop polls again
    QUICK_WAIT: ClassVar[float] = 0.001
    #: ... and the loop polls at least this often anyway (new connections, wakeups)
    QUICK_SPAN: ClassVar[float] = 0.002

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._selector: selectors.BaseSelector
        self._keys: Mapping[Any, selectors.SelectorKey]
        self._poll: Callable[[float, int], list[tuple[int, int]]]
        self._epoll = False
        self._use(new_selector())
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
        self._gate = _Gate(self)
        #: the single busy connection to read next without polling first, until _quick_until
        self._quick: Connection | None = None
        #: a new connection read in quick mode from the start, in _conns (under this fd) but not in the
        #: selector yet: registered only if it is still open when quick mode ends (a connection that
        #: makes its calls and closes meanwhile costs no selector registration at all)
        self._unregistered: Connection | None = None
        self._unregistered_fd = -1
        self._quick_until = 0.0
        #: connections out of the selector while their call waits for a remote reply (or runs deferred)
        self._suspended: set[Connection] = set()
        #: connections whose next call is deferred until no call waits for a remote reply
        self._deferred_conns: set[Connection] = set()

    # --- setup -------------------------------------------------------------------------------
    def init(self, handler: RequestHandler, listener: Listener) -> None:
        super().init(handler, listener)
        self._listener_fd = listener.fileno()
        self._selector.register(self._wake_r, selectors.EVENT_READ, (self, _WAKE))
        self._selector.register(listener.sock or listener, selectors.EVENT_READ, (self, _LISTENER))
        self._next_housekeeping = _monotonic() + self.housekeeping_interval
        self.preset_receive_wait(self.QUICK_WAIT)  # what quick mode sets: no system call per connection then

    def _use(self, selector: selectors.BaseSelector) -> None:
        """Make ``selector`` this server's, with the loop's shortcuts into it."""
        self._selector = selector
        if isinstance(selector, EpollSelector):
            self._epoll = True
            self._keys = selector.keys
            self._poll = selector.poll
        else:
            self._epoll = False
            self._keys = selector.get_map()
            self._poll = self._select_fds

    def _select_fds(self, timeout: float, maxevents: int) -> list[tuple[int, int]]:
        """The :attr:`_poll` of a selector without epoll: its ``select()`` as ``(fd, events)`` pairs."""
        return [(key.fd, events) for key, events in self._selector.select(timeout)]

    @property
    def selector(self) -> selectors.BaseSelector:
        """The selector this server (and any combined server) is registered in."""
        return self._selector

    # --- the loop ----------------------------------------------------------------------------
    def loop(self, loop_condition: Callable[[], bool] = lambda: True) -> None:
        """Select and dispatch until shutdown() or ``loop_condition()`` is False."""
        me = threading.get_ident()
        gate = self._gate
        self._loop_thread = me
        self._loop_done.clear()
        gate.loop_server = self
        gate.acquire_loop(me)
        call_gates[me] = gate
        try:
            while not self._shutdown and loop_condition():
                if not self._iterate(me):  # a call waited for a remote reply and a helper took the loop over
                    gate.acquire_loop(me)
                if self._closed:
                    return
        finally:
            call_gates.pop(me, None)
            gate.release(me, stop=True)
            self._loop_thread = None
            self._loop_done.set()

    def _iterate(self, me: int) -> bool:
        """One select and the dispatch of what it reported; False when another thread took the loop over.

        The per-call path: a connection of this server that is readable goes straight to :meth:`_handle`.
        """
        quick = self._quick
        if quick is not None:
            return self._iterate_quick(me, quick)
        gate = self._gate
        if gate.deferred and not gate.corrs:
            timeout = 0.0
        else:
            timeout = self._next_housekeeping - _monotonic()
            if timeout < 0.0:
                timeout = 0.0
        try:
            ready = self._poll(timeout, _MAX_EVENTS)
        except (OSError, ValueError):
            if self._closed:
                return True
            raise
        keys = self._keys
        gate.lock()
        try:
            if gate.deferred and not gate.corrs:
                self._run_deferred()
                if gate.holder != me:
                    return False
            for fd, _events in ready:
                key = keys.get(fd)
                if key is None:  # unregistered by a call handled before it (closed, suspended, deferred)
                    continue
                owner, target = key.data
                if owner is not self:
                    if isinstance(owner, MultiplexServer):
                        owner._dispatch(target)
                    else:
                        self._foreign_events(owner, [key.fileobj])
                elif target is _WAKE:
                    self._drain_wake()
                elif target is _LISTENER:
                    self._accept_pending()
                elif self._handle(target) and len(ready) == 1 and len(self._conns) == 1:
                    self._start_quick(target)
                if gate.holder != me:  # the rest of `ready` is stale: the new holder selects again
                    return False
                if self._closed:
                    return True
            now = _monotonic()
            if now >= self._next_housekeeping:
                self._housekeep(now)
            return gate.holder == me
        finally:
            gate.unlock()

    def _start_quick(self, conn: Connection) -> None:
        """Read the single, busy ``conn`` next without polling (see QUICK_WAIT), where its transport can.

        Not with COMMTIMEOUT (the socket has a timeout then), TLS, combined loops or calls waiting.
        """
        if self._combined or not self._owns_selector or self._shutdown or self.config.COMMTIMEOUT > 0:
            return
        setter = getattr(conn, "set_receive_wait", None)
        if setter is not None and setter(self.QUICK_WAIT):
            self._quick = conn
            self._quick_until = _monotonic() + self.QUICK_SPAN

    def _iterate_quick(self, me: int, conn: Connection) -> bool:
        """An iteration that reads the single busy connection, waiting up to QUICK_WAIT, instead of polling.

        Back to polling when nothing (complete) came, at the end of QUICK_SPAN, or when anything else is
        going on (other connections, calls waiting for remote replies, shutdown).
        """
        self._quick = None
        gate = self._gate
        gate.lock()
        try:
            if gate.corrs or gate.deferred or self._shutdown or len(self._conns) != 1 or gate.holder != me:
                return gate.holder == me
            handled = self._handle(conn)
            now = _monotonic()
            if handled and now < self._quick_until and gate.holder == me and len(self._conns) == 1:
                self._quick = conn
            if now >= self._next_housekeeping:
                self._housekeep(now)
            return gate.holder == me
        finally:
            if self._unregistered is not None and self._quick is None:  # polled from now on
                self._register_unregistered()
            gate.unlock()

    def events(self, eventsockets: Iterable[Any]) -> None:
        """Process the given ready sockets (listener, connections, their sockets or fds) once."""
        me = threading.get_ident()
        gate = self._gate
        if gate.holder == me:  # called from inside this loop (a combined server's events, user code)
            self._events(eventsockets, me)
            return
        gate.acquire_loop(me)
        call_gates[me] = gate
        try:
            with gate.exec:
                self._events(eventsockets, me)
            while gate.holder != me or (gate.deferred and not gate.corrs and not self._shutdown):
                if gate.holder != me:
                    gate.acquire_loop(me)
                with gate.exec:
                    self._run_deferred()
        finally:
            call_gates.pop(me, None)
            gate.release(me, stop=True)

    def _events(self, eventsockets: Iterable[Any], me: int) -> None:
        gate = self._gate
        for obj in eventsockets:
            if self._shutdown or gate.holder != me:
                return
            fd = fileno_of(obj)
            if fd < 0:
                continue
            if fd == self._listener_fd:
                self._dispatch(_LISTENER)
            elif fd in self._conns:
                conn = self._conns[fd]
                if conn not in self._suspended and conn not in self._deferred_conns:
                    self._dispatch(conn)
            else:
                key = self._selector.get_map().get(fd) if not self._closed else None
                if key is not None:
                    owner, target = key.data
                    if isinstance(owner, MultiplexServer):
                        owner._dispatch(target)
                    else:
                        self._foreign_events(owner, [key.fileobj])
        if gate.holder == me:
            self._maybe_housekeep()

    @property
    def sockets(self) -> list[Any]:
        """The listener's socket and every connection's socket (for a foreign select loop)."""
        result: list[Any] = []
        if self.listener is not None and not self._closed:
            result.append(self.listener.sock or self.listener)
        busy = self._suspended | self._deferred_conns
        result.extend(getattr(conn, "sock", conn) for conn in self._conns.values() if conn not in busy)
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
        self.accept_pending(self._adopt)

    def _adopt(self, conn: Connection) -> None:
        if not self._conns and self._quick is None and self._loop_thread == threading.get_ident():
            # the only connection, its handshake on its way: read it next, in the selector only later
            fd = conn.fileno()
            self._conns[fd] = conn
            self._start_quick(conn)
            if self._quick is conn:
                self._unregistered, self._unregistered_fd = conn, fd
                return
            del self._conns[fd]
        key = self._selector.register(conn, selectors.EVENT_READ, (self, conn))
        self._conns[key.fd] = conn

    def _register_unregistered(self) -> None:
        """Put the connection that quick mode read without the selector into it (when still open)."""
        conn, fd = self._unregistered, self._unregistered_fd
        self._unregistered = None
        if conn is None or self._conns.get(fd) is not conn or conn in self._suspended:
            return  # closed meanwhile, or suspended (resumed into the selector later)
        try:
            self._selector.register(conn, selectors.EVENT_READ, (self, conn))
        except (KeyError, ValueError, OSError) as exc:
            self._forget(conn)
            self.service_failed(conn, exc)

    def _handle(self, conn: Connection, first: Message | None = None) -> bool:
        """Read ``conn`` once (or take the deferred ``first`` message) and handle every complete message.

        True when the read brought a message, no call waits for a remote reply and ``conn`` is still open.
        """
        gate = self._gate
        self._servicing = conn
        gate.serving = self
        handled = False
        try:
            if first is None and not gate.corrs:  # the common case: no call waits for a remote reply
                msg = (conn.lane or self.receiver(conn))()
                if msg is HANDLED:  # a plain call, served by the receiver itself
                    handled = True
                elif msg is not None:
                    handled = True
                    handle_message = self.handler.handle_message  # type: ignore[union-attr]
                    next_message = conn.reader.next_message
                    while msg is not None:
                        handle_message(conn, msg)
                        if gate.corrs:  # a call waits for a remote reply now: the rest goes through the gate
                            msg = next_message()
                            if msg is not None:
                                self._service_gated(conn, msg)
                            break
                        msg = next_message()
                conn.last_activity = _monotonic()
                while conn.buffered() and conn not in self._deferred_conns:
                    if gate.corrs:
                        self._service_gated(conn, None)
                    else:
                        self.service(conn)
            else:  # calls are waiting for remote replies (or this is a deferred call): defer unrelated ones
                self._service_gated(conn, first)
                while conn.buffered() and conn not in self._deferred_conns:
                    self._service_gated(conn, None)
        except KeyboardInterrupt:  # Ctrl-C stops the loop; the connection is closed with the server
            raise
        except BaseException as exc:  # noqa: B036 - a handler error (even SystemExit) closes its connection only
            self._suspended.discard(conn)
            self._forget(conn)
            self.service_failed(conn, exc)
            return False
        finally:
            self._servicing = None
        if self._suspended and conn in self._suspended and conn not in self._deferred_conns:
            self._resume(conn)
            return False
        if self._closed:  # close() gave up waiting for this call and left the connection to us
            with gate.cv:
                owned = any(known is conn for known in self._conns.values())
                if owned:
                    self._forget(conn)
            if owned:
                self.drop(conn)
            return False
        return handled and not gate.corrs and conn not in self._deferred_conns

    def _service_gated(self, conn: Connection, first: Message | None) -> None:
        """:meth:`service` while calls wait for remote replies: a call unrelated to them is deferred."""
        msg = first
        if msg is None:
            msg = conn.receive()
            conn.last_activity = _monotonic()
        handler = self.handler
        assert handler is not None
        gate = self._gate
        while msg is not None:
            if gate.corrs and msg.type == MSG_INVOKE and bytes(msg.annotations.get("CORR") or b"") not in gate.corrs:
                self._suspend(conn)
                self._deferred_conns.add(conn)
                gate.deferred.append((self, conn, msg))
                return
            handler.handle_message(conn, msg)
            msg = conn.reader.next_message()
        conn.last_activity = _monotonic()

    def _run_deferred(self) -> None:
        """Run the calls deferred while others waited (in order), as long as none is waiting."""
        gate = self._gate
        me = threading.get_ident()
        while gate.deferred and not gate.corrs and gate.holder == me and not self._shutdown:
            server, conn, msg = gate.deferred.popleft()
            server._deferred_conns.discard(conn)
            if not any(known is conn for known in server._conns.values()):
                continue  # closed meanwhile
            server._handle(conn, msg)

    def _suspend(self, conn: Connection) -> None:
        """Take ``conn`` out of the selector (its call waits, or its next call is deferred)."""
        if conn in self._suspended:
            return
        self._suspended.add(conn)
        try:
            self._selector.unregister(conn)
        except (KeyError, ValueError, RuntimeError, OSError):
            pass

    def _resume(self, conn: Connection) -> None:
        """Put a suspended connection back into the selector (unless it was closed meanwhile)."""
        with self._gate.cv:
            self._suspended.discard(conn)
            if conn is self._unregistered:  # registered here
                self._unregistered = None
            if self._closed or not any(known is conn for known in self._conns.values()):
                return
            try:
                self._selector.register(conn, selectors.EVENT_READ, (self, conn))
            except (KeyError, ValueError, OSError) as exc:
                self._forget(conn)
                failed: BaseException | None = exc
            else:
                failed = None
        if failed is not None:
            self.service_failed(conn, failed)
        elif not self._epoll:
            self._wake()  # a selector other than epoll sees the registration only on its next select

    def _foreign_events(self, owner: Any, objs: Sequence[Any]) -> None:
        try:
            owner.events(list(objs))
        except Exception:
            log.warning("error in events() of combined server %r", owner, exc_info=True)

    def _forget(self, conn: Connection) -> None:
        """Unregister ``conn`` (still open or not) from the selector and the connection table."""
        if self._quick is conn:
            self._quick = None
        if conn is self._unregistered:  # never in the selector
            self._unregistered = None
            self._conns.pop(self._unregistered_fd, None)
            return
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
        if now >= self._next_housekeeping:
            self._housekeep(now)

    def _housekeep(self, now: float) -> None:
        """Close the connections idle for COMMTIMEOUT, run the handler's housekeeping, then the combined servers'."""
        self._next_housekeeping = now + self.housekeeping_interval
        if self.config.COMMTIMEOUT > 0:
            busy = self._suspended | self._deferred_conns
            for conn in list(self._conns.values()):
                if conn not in busy and self.expired(conn, now):
                    log.info("closing %r: nothing received for COMMTIMEOUT (%ss)", conn, self.config.COMMTIMEOUT)
                    self._forget(conn)
                    self.drop(conn)
        self.call_housekeeping()
        for other in self._combined:
            if isinstance(other, MultiplexServer):
                other._maybe_housekeep()

    # --- combining ---------------------------------------------------------------------------
    def defers_calls(self) -> bool:
        """True while calls wait for remote replies: unrelated calls are deferred until they are done."""
        return bool(self._gate.corrs)

    def combine_loop(self, server: Any) -> None:
        """Serve ``server`` from this loop: another multiplex server, or any object with ``sockets``/``events``."""
        if server is self:
            raise ValueError("cannot combine a server with itself")
        if isinstance(server, MultiplexServer):
            server._move_to(self._selector)
            server._gate = self._gate
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
        self._register_unregistered()
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
            selector.register(key.fileobj, key.events, key.data)
        if self._owns_selector:
            self._selector.close()
        self._use(selector)
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
        with self._gate.cv:
            self._closed = True
            self._gate.deferred = collections.deque(d for d in self._gate.deferred if d[0] is not self)
            self._deferred_conns.clear()
            closing = [c for c in self._conns.values() if c is not self._servicing and c not in self._suspended]
            for conn in closing:  # a call still running: the loop closes its connection after it
                self._forget(conn)
        for conn in closing:
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
