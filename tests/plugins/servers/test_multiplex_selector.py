"""The multiplex server's selector: the epoll fast path, and the portable ``selectors`` fallback."""

from __future__ import annotations

import select
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pyroplug.core import protocol
from pyroplug.core.expose import expose
from pyroplug.core.proxy import Proxy
from pyroplug.errors import ConnectionClosedError
from pyroplug.plugins.servers import multiplex
from pyroplug.plugins.servers.multiplex import EpollSelector, MultiplexServer, new_selector
from tests.features.support import serve
from tests.plugins.servers.support import (
    ENDPOINTS,
    EchoHandler,
    RunningServer,
    call,
    make_registry,
    running,
    send_request,
    test_config,
    wait_closed_by_server,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)
TCP4 = ENDPOINTS[0]
needs_epoll = pytest.mark.skipif(not hasattr(select, "epoll"), reason="no select.epoll on this platform")

#: how the server gets its selector: the default (epoll where available) and the fallbacks
SELECTOR_KINDS = {
    "default": new_selector,
    "poll": getattr(selectors, "PollSelector", selectors.SelectSelector),
    "select": selectors.SelectSelector,
}


@pytest.fixture(scope="module")
def registry():
    return make_registry()


@pytest.fixture(params=sorted(SELECTOR_KINDS))
def selector_kind(request, monkeypatch) -> Iterator[str]:
    """Run the test with each kind of selector in the servers it creates."""
    monkeypatch.setattr(multiplex, "new_selector", SELECTOR_KINDS[request.param])
    yield request.param


# --- EpollSelector on its own ---------------------------------------------------------------------


@needs_epoll
def test_new_selector_is_epoll_where_available():
    with new_selector() as sel:
        assert isinstance(sel, EpollSelector)


def test_new_selector_falls_back_without_epoll(monkeypatch):
    monkeypatch.delattr(select, "epoll", raising=False)
    with new_selector() as sel:
        assert not isinstance(sel, EpollSelector)
        assert isinstance(sel, selectors.BaseSelector)


@needs_epoll
def test_epoll_selector_behaves_like_a_selector():
    a, b = socket.socketpair()
    sel = EpollSelector()
    try:
        key = sel.register(a, selectors.EVENT_READ, "data-a")
        assert key.fd == a.fileno() and key.data == "data-a"
        assert sel.get_key(a) is key and sel.get_map()[a.fileno()] is key
        assert len(sel.get_map()) == 1
        with pytest.raises(KeyError):
            sel.register(a, selectors.EVENT_READ)
        with pytest.raises(ValueError):
            sel.register(b, 0)
        with pytest.raises(ValueError):
            sel.register(b, 8)
        with pytest.raises(ValueError):
            sel.register(object(), selectors.EVENT_READ)
        assert sel.select(0) == []
        b.send(b"x")
        assert sel.select(1.0) == [(key, selectors.EVENT_READ)]
        assert sel.select(-1) == [(key, selectors.EVENT_READ)]  # negative: no wait
        assert sel.poll(0, 10) == [(a.fileno(), select.EPOLLIN)]  # the loop's raw view
        # write readiness, and modify() (BaseSelector's unregister + register)
        wkey = sel.register(b, selectors.EVENT_WRITE, "data-b")
        assert (wkey, selectors.EVENT_WRITE) in sel.select(0)
        sel.modify(b, selectors.EVENT_READ, "again")
        assert sel.get_key(b).data == "again"
        assert all(k.fileobj is not b for k, _ in sel.select(0))
        assert sel.unregister(b).data == "again"
        with pytest.raises(KeyError):
            sel.unregister(b)
        # a socket closed while registered is still found (by identity) and unregistered
        a.close()
        assert sel.unregister(a) is key
        assert len(sel.get_map()) == 0
        with pytest.raises(KeyError):
            sel.unregister(a)
    finally:
        sel.close()
        a.close()
        b.close()
    assert len(sel.keys) == 0


@needs_epoll
def test_epoll_selector_waits_for_readiness():
    a, b = socket.socketpair()
    with EpollSelector() as sel:
        sel.register(a, selectors.EVENT_READ)
        started = time.monotonic()
        assert sel.select(0.05) == []
        assert time.monotonic() - started >= 0.04
        threading.Timer(0.05, b.send, (b"x",)).start()
        assert len(sel.select(None)) == 1  # None: wait as long as it takes
    a.close()
    b.close()


# --- the server on every kind of selector ---------------------------------------------------------


def test_calls_on_many_connections(registry, tmp_path, selector_kind):
    with running(registry, "multiplex", TCP4, str(tmp_path)) as srv:
        assert isinstance(srv.server.selector, EpollSelector) == (
            selector_kind == "default" and hasattr(select, "epoll")
        )
        conns = [srv.connect() for _ in range(50)]
        for round_ in range(3):
            for i, conn in enumerate(conns):
                send_request(conn, b"m%d" % i, seq=round_)
            for i, conn in enumerate(conns):
                assert bytes(conn.recv_message().data) == b"m%d" % i
        # several messages in one read are all handled
        conns[0].send(b"".join(protocol.encode(protocol.MSG_INVOKE, b"p%d" % s, 1, seq=s) for s in range(5)))
        assert [bytes(conns[0].recv_message().data) for _ in range(5)] == [b"p%d" % s for s in range(5)]
        assert srv.handler.max_active_total == 1
        for conn in conns:
            conn.close()
        assert wait_until(lambda: len(srv.server.connections) == 0)
        assert len(srv.handler.closed) == 50


def test_partial_messages_do_not_block_others(registry, tmp_path, selector_kind):
    with running(registry, "multiplex", TCP4, str(tmp_path)) as srv:
        slow, quick = srv.connect(), srv.connect()
        message = protocol.encode(protocol.MSG_INVOKE, b"in pieces", 1, seq=7)
        slow.send(message[:5])
        assert call(quick, b"quick") == b"quick"
        slow.send(message[5:30])
        assert call(quick, b"quick again", seq=1) == b"quick again"
        slow.send(message[30:])
        assert bytes(slow.recv_message().data) == b"in pieces"
        slow.close()
        quick.close()


def test_commtimeout_closes_idle_connections(registry, tmp_path, selector_kind):
    config = test_config(COMMTIMEOUT=0.2, POLLTIMEOUT=0.05)
    with running(registry, "multiplex", TCP4, str(tmp_path), config=config) as srv:
        idle, busy = srv.connect(), srv.connect()
        idle.send(protocol.encode(protocol.MSG_INVOKE, b"x", 1)[:10])  # half a header, then silence
        deadline = time.monotonic() + 0.6
        seq = 0
        while time.monotonic() < deadline:  # a connection in use stays open
            assert call(busy, b"alive", seq=seq) == b"alive"
            seq += 1
            time.sleep(0.02)
        assert wait_closed_by_server(idle)
        assert call(busy, b"still here", seq=seq) == b"still here"
        assert srv.handler.housekeeping_calls > 0
        busy.close()


def test_shutdown_from_another_thread_wakes_an_idle_loop(registry, tmp_path, selector_kind):
    srv = RunningServer(registry, "multiplex", TCP4, str(tmp_path), config=test_config(POLLTIMEOUT=30))
    conn = srv.connect()
    assert call(conn, b"x") == b"x"
    time.sleep(0.05)  # the loop waits in its selector, for up to POLLTIMEOUT
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 2
    assert wait_closed_by_server(conn)


class _UdpUpper:
    """A foreign server for combine_loop: answers each datagram in upper case."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.selector: Any = None

    @property
    def sockets(self) -> list[Any]:
        return [self.sock]

    def events(self, eventobjects: list[Any]) -> None:
        for obj in eventobjects:
            data, addr = obj.recvfrom(100)
            obj.sendto(data.upper(), addr)


def test_combined_servers_and_foreign_events(registry, tmp_path, selector_kind):
    main = RunningServer(registry, "multiplex", TCP4, str(tmp_path), run_loop=False)
    other = RunningServer(registry, "multiplex", ENDPOINTS[4], str(tmp_path), run_loop=False)
    udp = _UdpUpper()
    main.server.combine_loop(other.server)
    main.server.combine_loop(udp)
    assert other.server.selector is main.server.selector is udp.selector
    loop = threading.Thread(target=main.server.loop, daemon=True)
    loop.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(5)
    try:
        a, b = main.connect(), other.connect()
        for i in range(5):
            assert call(a, b"main", seq=i) == b"main"
            assert call(b, b"other", seq=i) == b"other"
            client.sendto(b"udp%d" % i, udp.sock.getsockname())
            assert client.recv(100) == b"UDP%d" % i
        assert wait_until(lambda: other.handler.housekeeping_calls > 0)
    finally:
        client.close()
        main.server.shutdown()
        loop.join(2)
        main.server.close()
        udp.sock.close()
    assert not loop.is_alive()
    assert wait_closed_by_server(b)


def test_events_from_a_foreign_loop(registry, tmp_path, selector_kind):
    srv = RunningServer(registry, "multiplex", TCP4, str(tmp_path), run_loop=False)
    try:
        conns = [srv.connect() for _ in range(3)]
        for i in range(3):
            for conn in conns:
                send_request(conn, b"e%d" % i, seq=i)
            answered = 0
            deadline = time.monotonic() + 5
            while answered < len(conns) and time.monotonic() < deadline:
                readable, _, _ = select.select(srv.server.sockets, [], [], 0.1)
                srv.server.events(readable)
                answered = len(srv.handler.closed) + srv.handler.calls - 3 * i
            for conn in conns:
                assert bytes(conn.recv_message().data) == b"e%d" % i
    finally:
        srv.stop()


# --- the per-call path's corner cases -------------------------------------------------------------


class _DropOther(EchoHandler):
    """``drop-other`` closes (server side) the other connection, which is readable in the same batch."""

    def handle_message(self, conn: Any, msg: protocol.Message) -> None:
        if bytes(msg.data) == b"drop-other":
            server = self.server
            assert isinstance(server, MultiplexServer)
            for other in server.connections:
                if other is not conn:
                    server._forget(other)
                    server.drop(other)
        super().handle_message(conn, msg)


def test_a_connection_dropped_earlier_in_the_same_batch_is_skipped(registry, tmp_path, selector_kind):
    # Both connections ask to drop the other: whichever the selector reports first (select's set order
    # is not fd order) drops the other, whose readiness in the same batch is then stale.
    handler = _DropOther()
    srv = RunningServer(registry, "multiplex", TCP4, str(tmp_path), handler=handler, run_loop=False)
    try:
        clients = []
        for _ in range(2):
            clients.append(srv.connect())
            assert wait_until(lambda: bool(select.select([srv.listener], [], [], 0)[0]))
            srv.server.events([srv.listener])
        assert len(srv.server.connections) == 2
        for client in clients:
            send_request(client, b"drop-other")
        server_conns = srv.server.connections
        assert wait_until(lambda: len(select.select(server_conns, [], [], 0)[0]) == 2)
        turns = iter([True, False])
        srv.server.loop(lambda: next(turns))  # exactly one select: both connections are in its batch
        assert handler.calls == 1
        assert len(handler.closed) == 1  # connection_closed once, not again for a stale readiness
        replies = []
        for client in clients:
            try:
                replies.append(bytes(client.recv_message().data))
            except ConnectionClosedError:
                replies.append(None)
        assert sorted(replies, key=repr) == [None, b"drop-other"]  # one answered, the other dropped
    finally:
        srv.stop()


class _Waits(EchoHandler):
    """``wait``: leaves a correlation id registered as waiting (as a call blocked on a remote reply does)."""

    def handle_message(self, conn: Any, msg: protocol.Message) -> None:
        if bytes(msg.data) == b"wait":
            server = self.server
            assert isinstance(server, MultiplexServer)
            server._gate.corrs[b"waiting-call"] += 1
        super().handle_message(conn, msg)


def test_defers_calls_while_a_call_waits(registry, tmp_path):
    srv = RunningServer(registry, "multiplex", TCP4, str(tmp_path), run_loop=False)
    try:
        server = srv.server
        assert isinstance(server, MultiplexServer)
        assert not server.defers_calls()
        server._gate.corrs[b"waiting-call"] += 1
        assert server.defers_calls()
        del server._gate.corrs[b"waiting-call"]
        assert not server.defers_calls()
    finally:
        srv.stop()


def test_calls_behind_one_that_starts_waiting_are_deferred(registry, tmp_path, selector_kind):
    handler = _Waits()
    with running(registry, "multiplex", TCP4, str(tmp_path), handler=handler) as srv:
        conn, other = srv.connect(), srv.connect()
        batch = [protocol.encode(protocol.MSG_INVOKE, b"wait", 1, seq=0)]
        batch += [protocol.encode(protocol.MSG_INVOKE, b"after %d" % s, 1, seq=s) for s in (1, 2)]
        conn.send(b"".join(batch))  # one read: the rest must not run while a call waits
        assert conn.recv_message().seq == 0
        send_request(other, b"unrelated")
        time.sleep(0.2)
        assert handler.calls == 1
        gate = srv.server._gate
        with gate.cv:
            del gate.corrs[b"waiting-call"]
        srv.server._wake()
        assert [bytes(conn.recv_message().data) for _ in range(2)] == [b"after 1", b"after 2"]
        assert bytes(other.recv_message().data) == b"unrelated"
        assert handler.max_active_total == 1
        conn.close()
        other.close()


# --- re-entrant calls through real daemons --------------------------------------------------------


@expose
class ReentryHub:
    def ask(self, listener: Any, n: int) -> Any:
        return listener.answer(n)

    def nested(self, n: int) -> int:
        return n + 100


@expose
class ReentryListener:
    def __init__(self, hub_uri: Any) -> None:
        self.hub_uri = hub_uri

    def answer(self, n: int) -> int:
        with Proxy(self.hub_uri) as hub:
            hub._pyroTimeout = 10
            value = hub.nested(n)
        time.sleep(0.01)  # longer than REENTRY_DELAY: a helper serves the loop meanwhile
        return value


def test_reentrant_callbacks(selector_kind):
    with serve("multiplex", objects={"hub": ReentryHub()}) as srv:
        listener = ReentryListener(srv.daemon.uriFor("hub"))
        with serve("thread", objects={"listener": listener}), srv.proxy("hub") as p:
            p._pyroTimeout = 10
            for n in range(3):
                assert p.ask(listener, n) == n + 100
            assert p.nested(7) == 107


# --- a single busy connection: read without polling first (QUICK_WAIT) ----------------------------


def _count_polls(server: MultiplexServer) -> list[int]:
    """Count the server's polls from now on (the list's only item)."""
    counter = [0]
    poll = server._poll

    def counting(timeout: float, maxevents: int) -> list[tuple[int, int]]:
        counter[0] += 1
        return poll(timeout, maxevents)

    server._poll = counting
    return counter


def _quick_server(registry: Any, tmp_path: Any, **config: Any) -> RunningServer:
    """A running multiplex server whose quick reads wait long (so that a slow test machine still hits them)."""
    srv = RunningServer(registry, "multiplex", TCP4, str(tmp_path), run_loop=False, config=test_config(**config))
    server = srv.server
    assert isinstance(server, MultiplexServer)
    server.QUICK_WAIT = 0.2  # type: ignore[misc]
    server.QUICK_SPAN = 5.0  # type: ignore[misc]
    srv.thread = threading.Thread(target=srv._run, name="test-loop", daemon=True)
    srv.thread.start()
    return srv


def test_a_single_busy_connection_is_read_without_polling(registry, tmp_path, selector_kind):
    srv = _quick_server(registry, tmp_path)
    try:
        conn = srv.connect()
        assert call(conn, b"first") == b"first"
        polls = _count_polls(srv.server)  # type: ignore[arg-type]
        for i in range(100):
            assert call(conn, b"call %d" % i, seq=i) == b"call %d" % i
        assert polls[0] < 10
        conn.close()
        assert wait_until(lambda: len(srv.handler.closed) == 1)
        time.sleep(0.05)
        assert len(srv.handler.closed) == 1
    finally:
        srv.stop()


def test_no_quick_reads_with_commtimeout_or_two_connections(registry, tmp_path):
    srv = _quick_server(registry, tmp_path, COMMTIMEOUT=5.0)
    try:
        conn = srv.connect()
        assert call(conn, b"first") == b"first"
        polls = _count_polls(srv.server)  # type: ignore[arg-type]
        for i in range(20):
            assert call(conn, b"x", seq=i) == b"x"
        assert polls[0] >= 19  # one per call (the first one was already waiting in the uncounted poll)
    finally:
        srv.stop()
    srv = _quick_server(registry, tmp_path)
    try:
        a, b = srv.connect(), srv.connect()
        assert call(a, b"a") == b"a" and call(b, b"b") == b"b"
        polls = _count_polls(srv.server)  # type: ignore[arg-type]
        for i in range(20):
            assert call(a, b"a", seq=i) == b"a"
            assert call(b, b"b", seq=i) == b"b"
        assert polls[0] >= 39
    finally:
        srv.stop()


def test_a_busy_connection_does_not_starve_new_ones(registry, tmp_path):
    with running(registry, "multiplex", TCP4, str(tmp_path)) as srv:  # the default QUICK_WAIT/QUICK_SPAN
        busy = srv.connect()
        stop = threading.Event()
        done = [0]

        def hammer() -> None:
            seq = 0
            while not stop.is_set():
                assert call(busy, b"busy", seq=seq) == b"busy"
                seq += 1
                done[0] = seq

        thread = threading.Thread(target=hammer, daemon=True)
        thread.start()
        try:
            assert wait_until(lambda: done[0] > 50)
            for i in range(5):
                started = time.monotonic()
                newcomer = srv.connect()
                assert call(newcomer, b"new") == b"new"
                assert time.monotonic() - started < 1.0
                newcomer.close()
                assert wait_until(lambda n=i: len(srv.handler.closed) == n + 1)
        finally:
            stop.set()
            thread.join(5)
        busy.close()


def test_shutdown_and_close_during_a_quick_read(registry, tmp_path):
    srv = _quick_server(registry, tmp_path, POLLTIMEOUT=30)
    assert isinstance(srv.server, MultiplexServer)
    srv.server.QUICK_WAIT = 1.0  # type: ignore[misc]
    conn = srv.connect()
    assert call(conn, b"x") == b"x"
    assert call(conn, b"y", seq=1) == b"y"  # the loop now waits in a read of this connection
    started = time.monotonic()
    srv.server.close()  # from another thread: returns once the read is over, then closes everything
    assert wait_closed_by_server(conn)
    assert srv.thread is not None
    srv.thread.join(3)
    assert not srv.thread.is_alive()
    assert time.monotonic() - started < 2.5
    assert len(srv.handler.closed) == 1
