"""The multiplex server type: one thread, sequential calls, combined loops."""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest

from pyroplug.core import protocol
from pyroplug.core.uri import URI
from pyroplug.plugins.servers.multiplex import MultiplexServer
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


@pytest.fixture(scope="module")
def registry():
    return make_registry()


def test_multiplex_server_is_registered(registry):
    assert registry.server_type("multiplex") is MultiplexServer


def test_all_calls_run_sequentially_in_one_thread(registry, tmp_path):
    with running(registry, "multiplex", TCP4, str(tmp_path)) as srv:
        conns = [srv.connect() for _ in range(5)]
        for conn in conns:
            conn.send(b"".join(protocol.encode(protocol.MSG_INVOKE, b"sleep:0.01", 1, seq=s) for s in range(3)))
        for conn in conns:
            assert [conn.recv_message().seq for _ in range(3)] == [0, 1, 2]
        assert srv.handler.max_active_total == 1
        assert srv.handler.threads == {"test-loop"}
        for conn in conns:
            conn.close()


def test_many_connections(registry, tmp_path):
    with running(registry, "multiplex", TCP4, str(tmp_path)) as srv:
        conns = [srv.connect() for _ in range(300)]
        for i, conn in enumerate(conns):
            send_request(conn, b"m%d" % i)
        for i, conn in enumerate(conns):
            assert bytes(conn.recv_message().data) == b"m%d" % i
        assert len(srv.server.connections) == 300
        for conn in conns:
            conn.close()
        assert wait_until(lambda: len(srv.server.connections) == 0)


def test_slow_handler_delays_but_slowloris_does_not(registry, tmp_path):
    with running(registry, "multiplex", TCP4, str(tmp_path)) as srv:
        stalls = [srv.connect() for _ in range(20)]
        for conn in stalls:  # twenty clients that stop half way through a header
            conn.send(protocol.encode(protocol.MSG_INVOKE, b"x", 1)[:10])
        conn = srv.connect()
        started = time.monotonic()
        for i in range(200):
            call(conn, b"quick", seq=i)
        assert time.monotonic() - started < 3
        for c in stalls + [conn]:
            c.close()


def test_combine_loop_serves_another_multiplex_server(registry, tmp_path):
    main = RunningServer(registry, "multiplex", TCP4, str(tmp_path), run_loop=False)
    other = RunningServer(registry, "multiplex", ENDPOINTS[4], str(tmp_path), run_loop=False)
    main.server.combine_loop(other.server)
    assert other.server.selector is main.server.selector
    loop = threading.Thread(target=main.server.loop, daemon=True)
    loop.start()
    try:
        a, b = main.connect(), other.connect()
        for i in range(10):
            assert call(a, b"main", seq=i) == b"main"
            assert call(b, b"other", seq=i) == b"other"
        assert len(main.handler.opened) == 1 and len(other.handler.opened) == 1
        assert len(main.server.sockets) == 4  # two listeners, two connections
        assert wait_until(lambda: other.handler.housekeeping_calls > 0)
    finally:
        main.server.shutdown()
        loop.join(2)
        main.server.close()
    assert not loop.is_alive()
    assert wait_closed_by_server(b)  # closing the main server closes the combined one too


class UdpEcho:
    """A foreign 'server' with ``sockets`` and ``events``, like Pyro4's name-server broadcast responder."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.selector = None
        self.seen = 0

    @property
    def sockets(self):
        return [self.sock]

    def events(self, eventobjects):
        for obj in eventobjects:
            assert obj is self.sock
            data, addr = self.sock.recvfrom(100)
            self.seen += 1
            self.sock.sendto(data.upper(), addr)


def test_combine_loop_serves_a_foreign_server(registry, tmp_path):
    main = RunningServer(registry, "multiplex", TCP4, str(tmp_path), run_loop=False)
    udp = UdpEcho()
    main.server.combine_loop(udp)
    assert udp.selector is main.server.selector
    loop = threading.Thread(target=main.server.loop, daemon=True)
    loop.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(5)
    try:
        client.sendto(b"ping", udp.sock.getsockname())
        assert client.recv(100) == b"PING"
        assert call(main.connect(), b"tcp too") == b"tcp too"
        assert udp.sock in main.server.sockets
    finally:
        client.close()
        main.stop()
        udp.sock.close()
    with pytest.raises(ValueError):
        main.server.combine_loop(main.server)


def test_foreign_events_with_raw_file_descriptors(registry, tmp_path):
    srv = RunningServer(registry, "multiplex", TCP4, str(tmp_path), run_loop=False)
    try:
        conn = srv.connect()
        assert wait_until(lambda: bool(select.select([srv.listener], [], [], 0)[0]))
        srv.server.events([srv.listener.fileno()])  # an int works as well as a socket
        assert len(srv.server.connections) == 1
        send_request(conn, b"fd")
        server_conn = srv.server.connections[0]
        assert wait_until(lambda: bool(select.select([server_conn], [], [], 0)[0]))
        srv.server.events([server_conn])  # and so does the Connection object
        assert bytes(conn.recv_message().data) == b"fd"
        srv.server.events([-1, 99999])  # closed or unknown: ignored
        conn.close()
    finally:
        srv.stop()


def test_close_from_another_thread_waits_for_the_loop(registry, tmp_path):
    handler = EchoHandler()
    srv = RunningServer(registry, "multiplex", TCP4, str(tmp_path), handler=handler, config=test_config(POLLTIMEOUT=10))
    conn = srv.connect()
    send_request(conn, b"sleep:0.3")
    assert wait_until(lambda: handler.active_total == 1)
    srv.server.close()  # returns after the running call, then closes everything
    assert conn.recv_message().type == protocol.MSG_RESULT
    assert wait_closed_by_server(conn)
    assert srv.thread is not None
    srv.thread.join(2)
    assert not srv.thread.is_alive()


def test_close_that_gives_up_waiting_leaves_the_running_call_alone(registry, tmp_path):
    handler = EchoHandler()
    srv = RunningServer(registry, "multiplex", TCP4, str(tmp_path), handler=handler, config=test_config(POLLTIMEOUT=10))
    srv.server.CLOSE_WAIT = 0.1  # type: ignore[misc]
    busy, idle = srv.connect(), srv.connect()
    assert call(idle, b"x") == b"x"
    send_request(busy, b"sleep:1.0")
    assert wait_until(lambda: handler.calls == 2 and handler.active_total == 1)  # busy's call, not idle's
    started = time.monotonic()
    srv.server.close()
    assert time.monotonic() - started < 0.8  # gave up waiting for the call
    assert wait_closed_by_server(idle)
    assert busy.recv_message().type == protocol.MSG_RESULT
    assert wait_closed_by_server(busy)
    assert wait_until(lambda: len(handler.closed) == 2)
    assert not handler.closed_during_call  # the busy connection was closed after its call
    assert srv.thread is not None
    srv.thread.join(2)
    assert not srv.thread.is_alive()


def test_uri_of_a_multiplex_daemon_location(registry, tmp_path):
    with running(registry, "multiplex", TCP4, str(tmp_path)) as srv:
        uri = URI(f"PYRO:thing@{srv.listener.location}")
        assert uri.port == srv.listener.port


def _recording_registrations(server: MultiplexServer) -> list:
    """The file objects registered in ``server``'s selector from now on."""
    selector = server.selector
    register = selector.register
    seen: list = []

    def recording(fileobj, events, data=None):
        seen.append(fileobj)
        return register(fileobj, events, data)

    selector.register = recording  # type: ignore[method-assign]
    return seen


def test_a_connection_done_within_quick_mode_never_enters_the_selector(registry, tmp_path, monkeypatch):
    # a loaded machine must not end quick mode before the client's close arrives
    monkeypatch.setattr(MultiplexServer, "QUICK_WAIT", 0.5)
    monkeypatch.setattr(MultiplexServer, "QUICK_SPAN", 5.0)
    with running(registry, "multiplex", TCP4, str(tmp_path)) as srv:
        registered = _recording_registrations(srv.server)
        for i in range(10):
            conn = srv.connect()
            assert call(conn, b"q%d" % i) == b"q%d" % i
            conn.close()
            assert wait_until(lambda: not srv.server.connections)
        assert registered == []
        assert len(srv.handler.closed) == 10


def test_a_connection_still_open_after_quick_mode_is_polled(registry, tmp_path):
    with running(registry, "multiplex", TCP4, str(tmp_path)) as srv:
        registered = _recording_registrations(srv.server)
        first = srv.connect()
        assert call(first, b"one") == b"one"
        assert wait_until(lambda: len(registered) == 1)  # quick mode ended: in the selector now
        time.sleep(0.05)
        assert call(first, b"later") == b"later"
        second = srv.connect()  # arrives while the first is polled
        assert call(second, b"two") == b"two"
        assert call(first, b"one again") == b"one again"
        assert len(registered) == 2
        first.close()
        second.close()
        assert wait_until(lambda: not srv.server.connections)


def test_two_connections_arriving_together(registry, tmp_path):
    """The second arrives while the first is read in quick mode, before it is in the selector."""
    with running(registry, "multiplex", TCP4, str(tmp_path)) as srv:
        for _ in range(5):
            first, second = srv.connect(), srv.connect()
            send_request(first, b"a")
            send_request(second, b"b")
            assert bytes(first.recv_message().data) == b"a"
            assert bytes(second.recv_message().data) == b"b"
            assert call(first, b"c", seq=1) == b"c"
            first.close()
            assert call(second, b"d", seq=1) == b"d"
            second.close()
            assert wait_until(lambda: not srv.server.connections)
