"""Behaviour both server types share, over tcp (IPv4, IPv6), unix (path, abstract) and the memory transport."""

from __future__ import annotations

import os
import select
import threading
import time

import pytest

from pyroplug.core import errors, protocol
from pyroplug.core.servertype import ServerType
from tests.plugins.servers.support import (
    ENDPOINTS,
    EchoHandler,
    RunningServer,
    call,
    endpoint_params,
    make_registry,
    running,
    send_request,
    test_config,
    wait_closed_by_server,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)
SERVER_TYPES = ["thread", "multiplex"]
TCP4 = ENDPOINTS[0]


@pytest.fixture(scope="module")
def registry():
    return make_registry()


@pytest.fixture(params=SERVER_TYPES)
def server_type(request):
    return request.param


@pytest.mark.parametrize("endpoint", endpoint_params())
def test_roundtrips(registry, server_type, endpoint, tmp_path):
    with running(registry, server_type, endpoint, str(tmp_path)) as srv:
        conns = [srv.connect() for _ in range(3)]
        for i in range(50):
            for n, conn in enumerate(conns):
                payload = f"call {i} on {n}".encode()
                assert call(conn, payload, seq=i) == payload
        big = os.urandom(1_500_000)  # several reads on the server, gathering send back
        assert call(conns[0], big, seq=99) == big
        assert call(conns[0], b"", seq=100) == b""
        for conn in conns:
            conn.close()
        assert wait_until(lambda: len(srv.handler.closed) == 3)
        assert len(srv.handler.opened) == 3


def test_pipelined_requests_are_answered_in_order(registry, server_type, tmp_path):
    with running(registry, server_type, TCP4, str(tmp_path)) as srv:
        conn = srv.connect()
        head_parts = [protocol.encode(protocol.MSG_INVOKE, b"p%d" % i, 1, seq=i) for i in range(20)]
        conn.send(b"".join(head_parts))  # 20 messages in one write
        for i in range(20):
            msg = conn.recv_message()
            assert (msg.seq, bytes(msg.data)) == (i, b"p%d" % i)
        assert max(srv.handler.max_active_per_conn.values()) == 1
        conn.close()


def test_message_arriving_byte_by_byte(registry, server_type, tmp_path):
    with running(registry, server_type, TCP4, str(tmp_path)) as srv:
        conn = srv.connect()
        data = protocol.encode(protocol.MSG_INVOKE, b"trickle", 1, seq=5)
        for i in range(len(data)):
            conn.send(data[i : i + 1])
            time.sleep(0.002)
        msg = conn.recv_message()
        assert (msg.seq, bytes(msg.data)) == (5, b"trickle")
        conn.close()


def test_slowloris_does_not_block_others(registry, server_type, tmp_path):
    with running(registry, server_type, TCP4, str(tmp_path)) as srv:
        slow = srv.connect()
        slow.send(protocol.encode(protocol.MSG_INVOKE, b"never finished", 1)[:12])  # half a header
        other = srv.connect()
        started = time.monotonic()
        for i in range(100):
            assert call(other, b"x", seq=i) == b"x"
        assert time.monotonic() - started < 5
        half_body = protocol.encode(protocol.MSG_INVOKE, b"y" * 1000, 1)[:500]  # header plus part of the body
        slow2 = srv.connect()
        slow2.send(half_body)
        assert call(other, b"still fine") == b"still fine"
        assert srv.handler.calls == 101
        for conn in (slow, slow2, other):
            conn.close()


def test_commtimeout_closes_stuck_and_idle_connections(registry, server_type, tmp_path):
    cfg = test_config(COMMTIMEOUT=0.5)
    with running(registry, server_type, TCP4, str(tmp_path), config=cfg) as srv:
        stuck = srv.connect(timeout=0)
        stuck.send(protocol.encode(protocol.MSG_INVOKE, b"never finished", 1)[:12])
        idle = srv.connect(timeout=0)
        assert call(idle, b"once") == b"once"
        started = time.monotonic()
        assert wait_closed_by_server(stuck, timeout=5)
        assert wait_closed_by_server(idle, timeout=5)
        assert time.monotonic() - started < 4
        busy = srv.connect(timeout=0)
        for i in range(6):  # a connection that keeps talking outlives COMMTIMEOUT
            assert call(busy, b"alive", seq=i) == b"alive"
            time.sleep(0.2)
        assert wait_until(lambda: len(srv.handler.closed) >= 2)
        busy.close()


def test_commtimeout_counts_from_the_end_of_a_long_call(registry, server_type, tmp_path):
    cfg = test_config(COMMTIMEOUT=0.4, THREADPOOL_SIZE=4)
    with running(registry, server_type, TCP4, str(tmp_path), config=cfg) as srv:
        slow = srv.connect(timeout=0)
        waiting = srv.connect(timeout=0)
        send_request(slow, b"sleep:1.0")  # longer than COMMTIMEOUT
        time.sleep(0.1)
        send_request(waiting, b"queued behind it (multiplex)")
        assert slow.recv_message().type == protocol.MSG_RESULT
        assert bytes(waiting.recv_message().data) == b"queued behind it (multiplex)"
        time.sleep(0.1)
        assert call(slow, b"right after") == b"right after"  # not closed as 'idle' after the long call
        slow.close()
        waiting.close()


def test_garbage_drops_only_that_connection(registry, server_type, tmp_path):
    with running(registry, server_type, TCP4, str(tmp_path)) as srv:
        good = srv.connect()
        assert call(good, b"before") == b"before"
        bad = srv.connect()
        bad.send(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        assert wait_closed_by_server(bad)
        assert call(good, b"after") == b"after"
        assert wait_until(lambda: len(srv.handler.closed) == 1)
        good.close()


def test_bad_checksum_drops_the_connection(registry, server_type, tmp_path):
    with running(registry, server_type, TCP4, str(tmp_path)) as srv:
        conn = srv.connect()
        data = bytearray(protocol.encode(protocol.MSG_INVOKE, b"x", 1))
        data[23] ^= 0xFF
        conn.send(bytes(data))
        assert wait_closed_by_server(conn)


def test_client_vanishing_mid_message(registry, server_type, tmp_path):
    with running(registry, server_type, TCP4, str(tmp_path)) as srv:
        other = srv.connect()
        vanishing = srv.connect()
        vanishing.send(protocol.encode(protocol.MSG_INVOKE, b"z" * 5000, 1)[:3000])
        time.sleep(0.05)
        vanishing.close()
        assert wait_until(lambda: len(srv.handler.closed) == 1)
        assert call(other, b"fine") == b"fine"
        # and a client that vanishes before reading its reply
        gone = srv.connect()
        send_request(gone, b"sleep:0.1")
        gone.close()
        assert wait_until(lambda: len(srv.handler.closed) == 2)
        assert call(other, b"fine") == b"fine"
        other.close()


def test_handler_exception_never_kills_the_server(registry, server_type, tmp_path):
    cfg = test_config(THREADPOOL_SIZE=2, THREADPOOL_SIZE_MIN=1)
    with running(registry, server_type, TCP4, str(tmp_path), config=cfg) as srv:
        for command in (b"boom", b"exit", b"boom", b"boom", b"exit"):
            conn = srv.connect()
            send_request(conn, command)
            assert wait_closed_by_server(conn)
        conns = [srv.connect() for _ in range(3)]
        for conn in conns:
            assert call(conn, b"ok") == b"ok"
            conn.close()
        assert srv.thread is not None and srv.thread.is_alive()


def test_handler_errors_in_connection_callbacks(registry, server_type, tmp_path):
    class Picky(EchoHandler):
        def connection_opened(self, conn):
            super().connection_opened(conn)
            if len(self.opened) == 1:
                raise RuntimeError("refuse the first one")

        def connection_closed(self, conn):
            super().connection_closed(conn)
            raise RuntimeError("error while closing")

        def run_housekeeping(self):
            super().run_housekeeping()
            raise RuntimeError("error in housekeeping")

    with running(registry, server_type, TCP4, str(tmp_path), handler=Picky()) as srv:
        refused = srv.connect()
        assert wait_closed_by_server(refused)
        conn = srv.connect()
        assert call(conn, b"second works") == b"second works"
        assert wait_until(lambda: srv.handler.housekeeping_calls >= 2)
        conn.close()
        assert wait_until(lambda: len(srv.handler.closed) == 2)
        assert call(srv.connect(), b"still serving") == b"still serving"


def test_housekeeping_runs_about_every_polltimeout(registry, server_type, tmp_path):
    with running(registry, server_type, TCP4, str(tmp_path), config=test_config(POLLTIMEOUT=0.1)) as srv:
        time.sleep(0.65)
        assert 3 <= srv.handler.housekeeping_calls <= 9


def test_shutdown_from_another_thread(registry, server_type, tmp_path):
    srv = RunningServer(registry, server_type, TCP4, str(tmp_path), config=test_config(POLLTIMEOUT=10))
    conn = srv.connect()
    assert call(conn, b"hi") == b"hi"
    started = time.monotonic()
    threading.Thread(target=srv.server.shutdown).start()
    assert srv.thread is not None
    srv.thread.join(2)
    assert not srv.thread.is_alive()
    assert time.monotonic() - started < 1
    srv.server.close()
    assert wait_closed_by_server(conn)
    assert wait_until(lambda: len(srv.handler.closed) == 1)


def test_shutdown_from_inside_a_handler(registry, server_type, tmp_path):
    srv = RunningServer(registry, server_type, TCP4, str(tmp_path), config=test_config(POLLTIMEOUT=10))
    conn = srv.connect()
    started = time.monotonic()
    assert call(conn, b"shutdown") == b"shutdown"
    assert srv.thread is not None
    srv.thread.join(2)
    assert not srv.thread.is_alive()
    assert time.monotonic() - started < 1
    srv.server.close()
    conn.close()


def test_close_from_another_thread_ends_the_loop(registry, server_type, tmp_path):
    srv = RunningServer(registry, server_type, TCP4, str(tmp_path), config=test_config(POLLTIMEOUT=10))
    conn = srv.connect()
    assert call(conn, b"hi") == b"hi"
    started = time.monotonic()
    srv.server.close()  # no shutdown() first
    assert srv.thread is not None
    srv.thread.join(2)
    assert not srv.thread.is_alive()
    assert time.monotonic() - started < 1
    assert wait_closed_by_server(conn)


def test_loop_condition_ends_the_loop(registry, server_type, tmp_path):
    srv = RunningServer(registry, server_type, TCP4, str(tmp_path), config=test_config(POLLTIMEOUT=0.1), run_loop=False)
    stop = threading.Event()
    loop = threading.Thread(target=srv.server.loop, args=(lambda: not stop.is_set(),))
    loop.start()
    assert call(srv.connect(), b"served") == b"served"
    stop.set()
    loop.join(2)
    assert not loop.is_alive()
    srv.server.close()


def test_close_closes_connections_and_listener(registry, server_type, tmp_path):
    srv = RunningServer(registry, server_type, ENDPOINTS[2], str(tmp_path))  # unix: the file must go
    path = srv.listener.location[len("./u:") :]
    conns = [srv.connect() for _ in range(5)]
    for conn in conns:
        assert call(conn, b"x") == b"x"
    srv.stop()
    for conn in conns:
        assert wait_closed_by_server(conn)
    assert wait_until(lambda: len(srv.handler.closed) == 5)
    assert not os.path.exists(path)
    with pytest.raises(errors.CommunicationError):
        srv.connect()
    srv.server.close()  # idempotent


def test_events_and_sockets_for_a_foreign_event_loop(registry, server_type, tmp_path):
    srv = RunningServer(registry, server_type, TCP4, str(tmp_path), run_loop=False)
    server: ServerType = srv.server
    assert server.sockets[0] is srv.listener.sock
    stop = threading.Event()

    def foreign_loop():
        while not stop.is_set():
            ready, _, _ = select.select(server.sockets, [], [], 0.05)
            if ready:
                server.events(ready)

    loop = threading.Thread(target=foreign_loop, daemon=True)
    loop.start()
    try:
        conns = [srv.connect() for _ in range(3)]
        for i in range(20):
            for conn in conns:
                assert call(conn, b"e%d" % i, seq=i) == b"e%d" % i
        if server_type == "multiplex":
            assert len(server.sockets) == 4  # the listener and three connections
        else:
            assert len(server.sockets) == 1  # only the listener (Pyro4 semantics)
        for conn in conns:
            conn.close()
    finally:
        stop.set()
        loop.join(2)
        server.close()
    assert server.sockets == []


def test_connections_property(registry, server_type, tmp_path):
    with running(registry, server_type, TCP4, str(tmp_path)) as srv:
        conns = [srv.connect() for _ in range(4)]
        for conn in conns:
            call(conn, b"x")
        # thread: parked after the linger; multiplex: always listed
        assert wait_until(lambda: len(srv.server.connections) == 4, timeout=3)
        assert repr(srv.server).startswith("<")
        for conn in conns:
            conn.close()
        assert wait_until(lambda: len(srv.server.connections) == 0, timeout=3)


def test_combine_loop_is_multiplex_only(registry, tmp_path):
    with running(registry, "thread", TCP4, str(tmp_path)) as srv:
        with pytest.raises(TypeError, match="multiplex"):
            srv.server.combine_loop(object())
