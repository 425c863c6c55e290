"""The ``thread`` server type: a worker pool that serves connections, and a selector that parks idle ones.

Unlike Pyro4's thread server (one worker per connection for its whole life, connections refused
when the pool is full), a worker here only holds a connection while it is busy:

* **parked** connections sit in one selector owned by the *parker* thread. They cost no thread,
  so thousands of idle proxies are fine; COMMTIMEOUT housekeeping closes those that received
  nothing (idle, or stuck mid-message) for longer than COMMTIMEOUT.
* when a parked connection becomes readable it is unregistered and queued as a *job*; new
  connections from the accept loop are queued too (and first wait briefly for their handshake).
* a **worker** (the pool grows from THREADPOOL_SIZE_MIN to THREADPOOL_SIZE threads; extra idle
  ones exit after :attr:`ThreadServer.WORKER_IDLE_TIMEOUT`) serves its connection in a loop:
  :meth:`~ServerType.service`, then wait for the next request on ``[connection, pressure]`` for
  :attr:`ThreadServer.LINGER` seconds. A busy client thus keeps its worker and gets bare-socket
  latency. When the linger runs out the connection is parked again (a partial message stays in
  its reader), so a slowloris client costs a selector entry, not a thread.
* the shared **pressure** fd is readable while jobs wait with no idle worker and the pool at its
  maximum: a lingering worker then parks its connection (or requeues it when it is readable) and
  takes the waiting job, so 1,000 connections share 40 workers fairly.
* a worker whose call waits for the reply of a remote call it made (a proxy call, typically a
  callback into its client) does not count towards THREADPOOL_SIZE while it waits: a waiting job
  gets a new worker. So THREADPOOL_SIZE bounds the calls *running*, and chains of callbacks calling
  back in (server -> client -> server ...) cannot exhaust the pool and deadlock (Pyro4#99).

A connection is always in exactly one place (parked, queued, or owned by one worker), so the
calls of one connection never run concurrently. ``loop()`` runs the accept loop in the caller's
thread; ``events()``/``sockets`` expose only the listener (Pyro4 semantics); ``shutdown()`` from
any thread, including a worker inside a remote call, makes ``loop()`` return promptly.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pyroplug.core.hookspec import hookimpl
from pyroplug.core.servertype import HANDLED, ServerType, fileno_of
from pyroplug.core.workers import call_gates

if TYPE_CHECKING:
    from pyroplug.core.config import Config
    from pyroplug.core.servertype import RequestHandler
    from pyroplug.core.transport import Connection, Listener

__all__ = ["ThreadServer", "pyroplug_server_types"]

log = logging.getLogger(__name__)
_monotonic = time.monotonic

#: a job: a connection, and whether it is known to be readable now
Job = tuple["Connection", bool]


def _socketpair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _two_fd_waiter(first: int, second: int) -> Callable[[float], list[int]]:
    """``wait(seconds)``: which of the two (readable) descriptors are ready, after waiting at most
    ``seconds``; one ``poll`` call with no selectors bookkeeping where the platform has poll."""
    if not hasattr(select, "poll"):  # (Windows) the selectors module's choice
        selector = selectors.DefaultSelector()
        selector.register(first, selectors.EVENT_READ)
        selector.register(second, selectors.EVENT_READ)
        return lambda seconds: [key.fd for key, _mask in selector.select(seconds)]
    poller = select.poll()
    poller.register(first, select.POLLIN)
    poller.register(second, select.POLLIN)
    poll = poller.poll
    return lambda seconds: [fd for fd, _event in poll(seconds * 1000)]


def _exclusive_waiter(wake_fd: int, listener_fd: int) -> tuple[Callable[[float], list[int]], Any]:
    """Like :func:`_two_fd_waiter`, with the listener watched by an epoll (returned too) in exclusive mode,
    alongside the idle workers' doors (see _Door)."""
    epoll = select.epoll()
    epoll.register(wake_fd, select.EPOLLIN)
    epoll.register(listener_fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
    poll = epoll.poll
    return (lambda seconds: [fd for fd, _event in poll(seconds)]), epoll


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass


def _poke(sock: socket.socket) -> None:
    try:
        sock.send(b"\0")
    except OSError:  # buffer full (a wakeup is pending anyway) or closed
        pass


def _set_receive_wait(conn: Connection, seconds: float) -> bool:
    """Give ``conn`` a receive timeout of its own when its transport supports it (see SocketConnection)."""
    setter = getattr(conn, "set_receive_wait", None)
    return bool(setter(seconds)) if setter is not None else False


class _Waiter:
    """Waits until one connection's fd or the shared pressure fd is readable."""

    __slots__ = ("_poll", "_pressure_fd", "_fd")

    def __init__(self, pressure_fd: int) -> None:
        self._pressure_fd = pressure_fd
        self._fd = -1
        self._poll = select.poll() if hasattr(select, "poll") else None
        if self._poll is not None:
            self._poll.register(pressure_fd, select.POLLIN)

    def watch(self, fd: int) -> None:
        self._fd = fd
        if self._poll is not None:
            self._poll.register(fd, select.POLLIN)

    def unwatch(self) -> None:
        if self._poll is not None and self._fd >= 0:
            try:
                self._poll.unregister(self._fd)
            except KeyError:
                pass
        self._fd = -1

    def wait(self, timeout: float) -> tuple[bool, bool]:
        """(connection readable or hung up, pressure) after at most ``timeout`` seconds."""
        if self._poll is not None:
            events = self._poll.poll(timeout * 1000.0)
            ready = pressure = False
            for fd, _mask in events:
                if fd == self._fd:
                    ready = True
                else:
                    pressure = True
            return ready, pressure
        readable, _, _ = select.select([self._fd, self._pressure_fd], [], [], timeout)  # pragma: no cover
        return self._fd in readable, self._pressure_fd in readable  # pragma: no cover


#: idle workers can wait for new connections themselves (Linux: epoll with EPOLLEXCLUSIVE, eventfd)
_DOORS = hasattr(select, "epoll") and hasattr(select, "EPOLLEXCLUSIVE") and hasattr(os, "eventfd")


class _Door:
    """Where an idle worker waits: for a job handed to it (a knock) or a new connection on the listener.

    Every idle worker watches the listener with EPOLLEXCLUSIVE, so the kernel wakes one waiting worker
    per new connection, and that worker accepts and serves it itself: no hand-off from an accepting
    thread (a wake-up and a context switch less per connection). Among waiting workers the kernel
    prefers the one whose door was made (or watched again) first. While the server does not accept (no
    request loop running, shut down) a door stops watching the listener once it saw a connection
    pending, so that the level-triggered readiness does not keep waking it.
    """

    __slots__ = ("_epoll", "_efd", "_listener_fd", "watching")

    def __init__(self, listener_fd: int, watch: bool) -> None:
        self._listener_fd = listener_fd
        self.watching = False
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            self._epoll = select.epoll()
            self._epoll.register(self._efd, select.EPOLLIN)
            if watch:
                self.watch()
        except BaseException:
            os.close(self._efd)
            raise

    def watch(self) -> None:
        """Watch the listener (again)."""
        self._epoll.register(self._listener_fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        self.watching = True

    def unwatch(self) -> None:
        """Stop watching the listener."""
        self.watching = False
        try:
            self._epoll.unregister(self._listener_fd)
        except (OSError, ValueError):  # closed meanwhile: the kernel forgot it
            pass

    def knock(self) -> None:
        """Wake the worker waiting here (from any thread)."""
        try:
            os.eventfd_write(self._efd, 1)
        except OSError:  # closed: the worker is gone
            pass

    def wait(self, timeout: float) -> tuple[bool, bool]:
        """(knocked, a connection may be pending) after at most ``timeout`` seconds; a knock is consumed."""
        knocked = incoming = False
        for fd, _mask in self._epoll.poll(timeout):
            if fd == self._efd:
                knocked = True
                try:
                    os.eventfd_read(self._efd)
                except OSError:
                    pass
            else:
                incoming = True
        return knocked, incoming

    def clear(self) -> None:
        """Consume a knock, if there is one."""
        try:
            os.eventfd_read(self._efd)
        except OSError:  # none (non-blocking), or closed
            pass

    def close(self) -> None:
        self._epoll.close()
        os.close(self._efd)


class _Worker(threading.Thread):
    _ids = itertools.count(1)

    def __init__(self, pool: _Pool, first_job: Job) -> None:
        super().__init__(name=f"pyroplug-worker-{next(self._ids)}", daemon=True)
        self.pool = pool
        self.job: Job | None = first_job
        self.wake = threading.Lock()
        self.wake.acquire()  # released by the pool to hand this (idle) worker a job (without a door)
        self.waiter = _Waiter(pool.pressure_fd)
        #: where the worker waits while idle when it accepts connections itself (see _Door), else None
        self.door: _Door | None = pool.new_door()

    def hand(self, job: Job | None) -> None:
        """Give this idle worker ``job`` (None: exit) and wake it; with the pool's lock held."""
        self.job = job
        if self.door is not None:
            self.door.knock()
        else:
            self.wake.release()

    def run(self) -> None:
        pool = self.pool
        server = pool.server
        job, self.job = self.job, None
        me = threading.get_ident()
        call_gates[me] = pool  # its proxy calls go through pool.yield_during
        try:
            while job is not None:
                conn, ready = job
                try:
                    job = server._serve(conn, ready, self.waiter)
                except BaseException:  # a bug in the server itself: keep the worker alive
                    log.exception("worker %s: unexpected error serving %r", self.name, conn)
                    server.drop(conn)
                    job = None
                if job is None:
                    job = pool.next_job(self)
        finally:
            call_gates.pop(me, None)
            pool.worker_exited(self)
            if self.door is not None:
                self.door.close()


class _Pool:
    """The elastic worker pool with direct hand-off to idle workers and a pressure signal."""

    def __init__(self, server: ThreadServer, size_min: int, size_max: int, idle_timeout: float) -> None:
        self.server = server
        self.size_max = max(1, size_max)
        self.size_min = min(max(0, size_min), self.size_max)
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._queue: collections.deque[Job] = collections.deque()
        self._idle: list[_Worker] = []  # a stack: the most recently idle worker is reused first
        self.workers: set[_Worker] = set()
        self._pressure_r, self._pressure_w = _socketpair()
        self.pressure_fd = self._pressure_r.fileno()
        #: True while jobs wait with no idle worker and the pool at its maximum (read without the lock)
        self.pressure = False
        self.closed = False
        #: workers whose call waits for a remote reply (they do not count towards size_max)
        self.waiting = 0
        #: the listener's fd when idle workers accept connections themselves (see _Door), else None
        self.door_fd: int | None = None

    def new_door(self) -> _Door | None:
        """A door for a new worker (None when workers do not accept); the accept loop stays last in line."""
        if self.door_fd is None:
            return None
        accepting = self.server.accepting
        try:
            door = _Door(self.door_fd, accepting)
        except (OSError, ValueError) as exc:
            log.debug("worker without a door: %s", exc)
            return None
        if accepting:
            self.server.last_in_line()
        return door

    def _set_pressure(self, on: bool) -> None:  # with the lock held
        if on != self.pressure:
            self.pressure = on
            if on:
                _poke(self._pressure_w)
            else:
                _drain(self._pressure_r)

    def submit(self, conn: Connection, ready: bool) -> bool:
        """Hand a job to an idle worker, a new worker, or the queue; False once the pool is closed."""
        with self._lock:
            if self.closed:
                return False
            if self._idle:
                self._idle.pop().hand((conn, ready))
                return True
            if len(self.workers) - self.waiting < self.size_max:
                worker = _Worker(self, (conn, ready))
                self.workers.add(worker)
                try:
                    worker.start()
                    return True
                except RuntimeError as exc:  # "can't start new thread": the busy workers will get to it
                    self.workers.discard(worker)
                    log.warning("cannot start a worker thread (%s); %d workers serve the queue", exc, len(self.workers))
            self._queue.append((conn, ready))
            self._set_pressure(True)
            return True

    def try_claim(self) -> Job | None:
        """A waiting job, if there is one (called by a worker that will give up its connection)."""
        with self._lock:
            if not self._queue or self.closed:
                return None
            job = self._queue.popleft()
            if not self._queue:
                self._set_pressure(False)
            return job

    def next_job(self, worker: _Worker) -> Job | None:
        """The next job for ``worker``; waits while idle. None: the worker should exit."""
        with self._lock:
            if self.closed:
                return None
            if self._queue:
                job = self._queue.popleft()
                if not self._queue:
                    self._set_pressure(False)
                return job
            self._idle.append(worker)
        if worker.door is not None:
            return self._wait_at_door(worker, worker.door)
        while True:
            woken = worker.wake.acquire(timeout=self.idle_timeout)
            with self._lock:
                if not woken and worker in self._idle:
                    if len(self.workers) > self.size_min and not self.closed:
                        self._idle.remove(worker)
                        self.workers.discard(worker)  # now, so that other idle workers count it gone
                        return None
                    continue
                if not woken:  # claimed just as the wait timed out: the release already happened
                    worker.wake.acquire()
                handed, worker.job = worker.job, None
                return handed

    def rouse_idle(self) -> None:
        """Wake the idle workers whose doors stopped watching the listener (they watch it again)."""
        with self._lock:
            for worker in self._idle:
                if worker.door is not None and not worker.door.watching:
                    worker.door.knock()

    def _wait_at_door(self, worker: _Worker, door: _Door) -> Job | None:
        """next_job for an idle worker with a door: a handed job, or a connection it accepted itself."""
        server = self.server
        while True:
            if not door.watching and server.accepting:  # the request loop runs (again)
                try:
                    door.watch()
                except (OSError, ValueError) as exc:  # the listener is closed: the pool closes too
                    log.debug("door not watching: %s", exc)
                else:
                    server.last_in_line()
            knocked, incoming = door.wait(self.idle_timeout)
            conn = None
            if incoming:
                if server.accepting and not self.closed:
                    conn = server.accept_one()
                else:  # left to the request loop, whenever it runs: not woken by it again meanwhile
                    door.unwatch()
            with self._lock:
                if worker in self._idle:  # nothing was handed to it
                    if conn is not None:
                        self._idle.remove(worker)
                        return conn, False
                    if not knocked and not incoming and len(self.workers) > self.size_min and not self.closed:
                        self._idle.remove(worker)
                        self.workers.discard(worker)  # now, so that other idle workers count it gone
                        return None
                    continue
                handed, worker.job = worker.job, None
            if not knocked:  # handed a job while it accepted: take the knock now (not a spurious wake later)
                door.clear()
            if conn is not None and not self.submit(conn, False):  # accepted just as a job came: pass it on
                server.drop(conn)
            return handed

    def worker_exited(self, worker: _Worker) -> None:
        with self._lock:
            self.workers.discard(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            if self._queue and not self.closed and len(self.workers) - self.waiting < self.size_max:
                # a worker exited with jobs waiting (it should not): start a replacement
                replacement = _Worker(self, self._queue[0])
                try:
                    replacement.start()
                except RuntimeError:
                    return
                self._queue.popleft()
                self.workers.add(replacement)
                if not self._queue:
                    self._set_pressure(False)

    def yield_during(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` (a worker's remote call) not counting the worker towards size_max meanwhile."""
        me = threading.get_ident()
        call_gates.pop(me, None)
        with self._lock:
            self.waiting += 1
            if self._queue and not self.closed and len(self.workers) - self.waiting < self.size_max:
                worker = _Worker(self, self._queue[0])  # a job waits for a worker: this one is idle now
                try:
                    worker.start()
                except RuntimeError:
                    pass
                else:
                    self._queue.popleft()
                    self.workers.add(worker)
                    if not self._queue:
                        self._set_pressure(False)
        try:
            return fn(*args)
        finally:
            with self._lock:
                self.waiting -= 1
            call_gates[me] = self

    def close(self) -> list[Job]:
        """Stop handing out jobs, release idle workers, wake lingering ones; returns the queued jobs."""
        with self._lock:
            self.closed = True
            queued = list(self._queue)
            self._queue.clear()
            for worker in self._idle:
                worker.hand(None)
            self._idle.clear()
            _poke(self._pressure_w)  # stays readable: every lingering worker notices the close
            self.pressure = True
            return queued

    def release_fds(self) -> None:
        self._pressure_r.close()
        self._pressure_w.close()

    @property
    def idle_count(self) -> int:
        return len(self._idle)


class _Parker(threading.Thread):
    """Owns the parked connections: hands readable ones to the pool, enforces COMMTIMEOUT, housekeeps."""

    def __init__(self, server: ThreadServer) -> None:
        super().__init__(name="pyroplug-parker", daemon=True)
        self.server = server
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = _socketpair()
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._incoming: collections.deque[Connection] = collections.deque()
        self.stopping = False

    def park(self, conn: Connection) -> None:
        """Give ``conn`` back to the selector (from any thread)."""
        self._incoming.append(conn)
        _poke(self._wake_w)

    def stop(self) -> None:
        self.stopping = True
        _poke(self._wake_w)

    def run(self) -> None:
        server = self.server
        pool = server.pool
        selector = self.selector
        interval = server.housekeeping_interval
        next_housekeeping = _monotonic() + interval
        while not self.stopping:
            try:
                ready = selector.select(max(0.0, next_housekeeping - _monotonic()))
                for key, _mask in ready:
                    conn = key.data
                    if conn is None:
                        _drain(self._wake_r)
                        continue
                    selector.unregister(key.fileobj)
                    if not pool.submit(conn, True):
                        server.drop(conn)
                self._register_incoming()
                now = _monotonic()
                if now >= next_housekeeping and not self.stopping:
                    next_housekeeping = now + interval
                    self._expire(now)
                    server.call_housekeeping()
            except Exception:  # this thread must not die: the parked connections depend on it
                if self.stopping:
                    break
                log.exception("error in the parker thread")
                time.sleep(0.05)

    def _register_incoming(self) -> None:
        while self._incoming:
            conn = self._incoming.popleft()
            try:
                self.selector.register(conn, selectors.EVENT_READ, conn)
            except (KeyError, ValueError, OSError) as exc:
                self.server.service_failed(conn, exc)

    def _expire(self, now: float) -> None:
        server = self.server
        if server.config.COMMTIMEOUT <= 0:
            return
        for key in list(self.selector.get_map().values()):
            conn = key.data
            if conn is not None and server.expired(conn, now):
                log.info("closing %r: nothing received for COMMTIMEOUT (%ss)", conn, server.config.COMMTIMEOUT)
                self.selector.unregister(key.fileobj)
                server.drop(conn)

    def parked(self) -> list[Connection]:
        """The parked connections, plus those about to be registered."""
        try:
            result = [key.data for key in list(self.selector.get_map().values()) if key.data is not None]
        except RuntimeError:  # the map changed while we copied it: not worth a lock for diagnostics
            result = []
        return result + list(self._incoming)

    def take_all(self) -> list[Connection]:
        """Unregister and return every parked connection (after the thread has stopped)."""
        self._register_incoming_silently()
        conns = []
        for key in list(self.selector.get_map().values()):
            if key.data is not None:
                conns.append(key.data)
                try:
                    self.selector.unregister(key.fileobj)
                except (KeyError, ValueError):
                    pass
        return conns

    def _register_incoming_silently(self) -> None:
        while self._incoming:
            conn = self._incoming.popleft()
            try:
                self.selector.register(conn, selectors.EVENT_READ, conn)
            except (KeyError, ValueError, OSError):
                self.server.drop(conn)

    def release_fds(self) -> None:
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()


class ThreadServer(ServerType):
    """Worker-pool server type (SERVERTYPE ``thread``) that parks idle connections in a selector."""

    name: ClassVar[str] = "thread"
    #: seconds a worker waits on its connection for the next request before parking it
    LINGER: ClassVar[float] = 0.25
    #: the first part of the linger, waited for inside the read itself (plain sockets, no COMMTIMEOUT)
    QUICK_WAIT: ClassVar[float] = 0.005
    #: seconds an idle worker above THREADPOOL_SIZE_MIN waits for a job before it exits
    WORKER_IDLE_TIMEOUT: ClassVar[float] = 10.0
    #: connections accepted per readiness of the listener: one, so that the accept thread goes back to its
    #: (level-triggered) poll right after handing a connection to a worker, instead of first failing
    #: another accept while the woken worker waits for the interpreter lock
    ACCEPT_BATCH: ClassVar[int] = 1
    #: idle workers accept new connections themselves where the platform can (see _Door); else the
    #: accept loop accepts every connection and hands it to a worker
    WORKERS_ACCEPT: ClassVar[bool] = True
    #: how long close() waits for workers and the parker thread, in total
    CLOSE_WAIT: ClassVar[float] = 3.0

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.pool = _Pool(self, config.THREADPOOL_SIZE_MIN, config.THREADPOOL_SIZE, self.WORKER_IDLE_TIMEOUT)
        self._parker: _Parker | None = None
        self._start_lock = threading.Lock()
        self._loop_wake_r, self._loop_wake_w = _socketpair()
        self._shutdown = False
        self._closed = False
        self._loop_thread: int | None = None
        self._loop_epoll: Any = None  # the accept loop's epoll while it runs with workers' doors
        #: whether idle workers accept new connections now: while the request loop runs, before shutdown
        self.accepting = False
        self._loop_done = threading.Event()
        self._loop_done.set()

    def init(self, handler: RequestHandler, listener: Listener) -> None:
        super().init(handler, listener)
        self.preset_receive_wait(self.QUICK_WAIT)  # what _serve sets: no system call per connection then
        if self.WORKERS_ACCEPT and _DOORS and listener.concurrent_accept:
            self.pool.door_fd = listener.fileno()

    # --- starting ----------------------------------------------------------------------------
    def _ensure_started(self) -> _Parker:
        parker = self._parker
        if parker is None:
            with self._start_lock:
                parker = self._parker
                if parker is None:
                    parker = _Parker(self)
                    parker.start()
                    self._parker = parker
        return parker

    # --- accepting ---------------------------------------------------------------------------
    def loop(self, loop_condition: Callable[[], bool] = lambda: True) -> None:
        """Accept connections in this thread until shutdown() or ``loop_condition()`` is False."""
        if self._closed:
            return
        listener = self.listener
        assert listener is not None
        self._ensure_started()
        poll_timeout = self.config.POLLTIMEOUT if self.config.POLLTIMEOUT > 0 else 2.0
        self._loop_thread = threading.get_ident()
        self._loop_done.clear()
        self.accepting = not self._shutdown
        epoll = None
        try:
            wake_fd = self._loop_wake_r.fileno()
            listener_fd = fileno_of(listener.sock or listener)
            if self.pool.door_fd is not None:  # idle workers accept too: this loop only when none waits
                wait, epoll = _exclusive_waiter(wake_fd, self.pool.door_fd)
                self._loop_epoll = epoll
                self.last_in_line()  # behind the doors of the workers there are already
                self.pool.rouse_idle()  # doors that stopped watching while no loop ran watch again
            else:
                wait = _two_fd_waiter(wake_fd, listener_fd)
            while not self._shutdown and loop_condition():
                try:
                    ready = wait(poll_timeout)
                except (OSError, ValueError):
                    if self._closed:
                        break
                    raise
                for fd in ready:
                    if fd == wake_fd:
                        _drain(self._loop_wake_r)
                    else:
                        self._accept_pending()
        finally:
            self.accepting = False
            self._loop_thread = None
            if epoll is not None:
                self._loop_epoll = None
                epoll.close()
            self._loop_done.set()

    def last_in_line(self) -> None:
        """Register the accept loop's watch of the listener again, behind the doors of the workers: the
        kernel wakes the first waiting one in order of registration, so the loop accepts (and hands the
        connection to the pool) only when no idle worker waits. Called when a worker gets its door."""
        epoll, fd = self._loop_epoll, self.pool.door_fd
        if epoll is None or fd is None:
            return
        try:
            epoll.unregister(fd)
            epoll.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        except (OSError, ValueError, KeyError):  # the loop ended meanwhile
            pass

    def events(self, eventsockets: Iterable[Any]) -> None:
        """Accept the pending connections when the listener is among ``eventsockets`` (Pyro4 semantics)."""
        if self._closed or self.listener is None:
            return
        listener_fd = self.listener.fileno()
        for obj in eventsockets:
            if fileno_of(obj) == listener_fd:
                self._ensure_started()
                self._accept_pending()
                return

    @property
    def sockets(self) -> list[Any]:
        """Only the listener: connections are owned by the parker thread and the workers."""
        if self.listener is None or self._closed:
            return []
        return [self.listener.sock or self.listener]

    def _accept_pending(self) -> None:
        self.accept_pending(self._adopt)

    def _adopt(self, conn: Connection) -> None:
        if not self.pool.submit(conn, False):
            self.drop(conn)

    # --- serving (runs in workers) -------------------------------------------------------------
    def _serve(self, conn: Connection, ready: bool, waiter: _Waiter) -> Job | None:
        """Serve ``conn`` while it stays busy; returns a job taken over under pressure, else None."""
        pool = self.pool
        try:
            fd = conn.fileno()
        except (OSError, ValueError):
            fd = -1
        if fd < 0:
            self.drop(conn)
            return None
        waiter.watch(fd)
        # a busy client's next request is awaited inside the read itself first (one system call instead
        # of a poll and a read); only when none came within QUICK_WAIT does the linger poll take over
        quick = self.config.COMMTIMEOUT <= 0 and _set_receive_wait(conn, self.QUICK_WAIT)
        if quick:  # a new connection's handshake (or the next request) is awaited inside the read itself
            ready = True
        try:
            linger = self.LINGER
            deadline = 0.0
            while True:
                if ready:
                    try:
                        self.service(conn)
                        while conn.buffered():
                            self.service(conn)
                        if quick:  # the busy client's calls, served without leaving this loop
                            receive, next_message = conn.lane or self.receiver(conn), conn.reader.next_message
                            handle_message = self.handler.handle_message  # type: ignore[union-attr]
                            while not pool.pressure and not pool.closed:
                                msg = receive()  # waits up to QUICK_WAIT; None: nothing (complete) came
                                if msg is None:
                                    break
                                if msg is HANDLED:  # a plain call, served by the receiver itself
                                    continue
                                while msg is not None:
                                    handle_message(conn, msg)
                                    msg = next_message()
                                receive = conn.lane or self.receiver(conn)
                            conn.last_activity = _monotonic()
                    except BaseException as exc:  # noqa: B036 - the handler must never kill a worker
                        self.service_failed(conn, exc)
                        return None
                    if pool.closed:
                        self.drop(conn)
                        return None
                    if pool.pressure:
                        job = pool.try_claim()
                        if job is not None:
                            self._hand_back(conn, waiter.wait(0)[0])
                            return job
                    deadline = 0.0
                now = _monotonic()
                if not deadline:
                    deadline = now + linger
                elif now >= deadline:
                    self._park(conn)
                    return None
                ready, pressure = waiter.wait(deadline - now)
                if pressure:
                    if pool.closed:
                        self.drop(conn)
                        return None
                    job = pool.try_claim()
                    if job is not None:
                        self._hand_back(conn, ready)
                        return job
                elif not ready:
                    self._park(conn)
                    return None
        finally:
            waiter.unwatch()

    def _hand_back(self, conn: Connection, readable: bool) -> None:
        """Give up ``conn`` to take another job: requeue it when it has a request waiting, else park it."""
        if readable:
            if not self.pool.submit(conn, True):
                self.drop(conn)
        else:
            self._park(conn)

    def _park(self, conn: Connection) -> None:
        parker = self._parker
        if parker is None or parker.stopping:
            self.drop(conn)
        else:
            parker.park(conn)

    # --- stopping ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Make loop() return promptly; safe from any thread, including a worker inside a call."""
        self._shutdown = True
        self.accepting = False
        _poke(self._loop_wake_w)

    def close(self) -> None:
        """Close the listener and every connection; waits (bounded) for the parker and the workers.

        A connection whose worker is still inside a remote call is closed when that call returns.
        """
        if self._closed:
            return
        self._closed = True
        self.shutdown()
        deadline = _monotonic() + self.CLOSE_WAIT
        if self._loop_thread is not None and self._loop_thread != threading.get_ident():
            self._loop_done.wait(self.CLOSE_WAIT)  # the accept loop returns at once: it never runs calls
        if self.listener is not None:
            self.listener.close()
        parker = self._parker
        if parker is not None:
            parker.stop()
            if parker is not threading.current_thread():
                parker.join(max(0.0, deadline - _monotonic()))
        for conn, _ready in self.pool.close():
            self.drop(conn)
        if parker is not None:
            for conn in parker.take_all():
                self.drop(conn)
        current = threading.current_thread()
        for worker in list(self.pool.workers):
            if worker is not current:
                worker.join(max(0.0, deadline - _monotonic()))
        if parker is not None:  # parked by a worker in the moment the parker stopped
            for conn in parker.take_all():
                self.drop(conn)
        busy = [w for w in self.pool.workers if w.is_alive() and w is not current]
        if busy:
            log.warning("closed with %d worker(s) still busy in a remote call", len(busy))
        else:
            self.pool.release_fds()
            if parker is not None and not parker.is_alive():
                parker.release_fds()
        self._loop_wake_r.close()
        self._loop_wake_w.close()

    # --- diagnostics -------------------------------------------------------------------------
    @property
    def connections(self) -> list[Connection]:
        """Parked connections (those busy in a worker or queued are not listed)."""
        return self._parker.parked() if self._parker is not None else []

    def __repr__(self) -> str:
        location = getattr(self.listener, "location", None)
        return (
            f"<{type(self).__name__} on {location}; {len(self.pool.workers)} workers "
            f"({self.pool.idle_count} idle), {len(self.connections)} parked>"
        )


@hookimpl
def pyroplug_server_types() -> Sequence[type[ServerType]]:
    """The thread server type."""
    return (ThreadServer,)
