"""The thread server type: many connections on a bounded pool, per-connection order, fairness, parking."""

from __future__ import annotations

import select
import threading
import time

import pytest

from pyroplug.core import protocol
from pyroplug.plugins.servers import thread as thread_module
from pyroplug.plugins.servers.thread import ThreadServer
from pyroplug.testing.memory_transport import MemoryListener
from tests.plugins.servers.support import (
    ENDPOINTS,
    RunningServer,
    call,
    make_registry,
    raise_nofile,
    running,
    send_request,
    test_config,
    wait_closed_by_server,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)
TCP4 = ENDPOINTS[0]
MEM = ENDPOINTS[4]


@pytest.fixture(scope="module")
def registry():
    return make_registry()


def test_thread_server_is_registered(registry):
    assert registry.server_type("thread") is ThreadServer


@pytest.mark.parametrize("endpoint", [TCP4, MEM], ids=["tcp4", "mem"])
def test_a_thousand_simultaneous_connections_are_all_served(registry, endpoint, tmp_path):
    raise_nofile(2 * 1000 + 500)  # both ends live in this process
    cfg = test_config()  # the default pool: THREADPOOL_SIZE=40
    assert cfg.THREADPOOL_SIZE == 40
    with running(registry, "thread", endpoint, str(tmp_path), config=cfg) as srv:
        conns = [srv.connect() for _ in range(1000)]
        try:
            for round_ in range(2):
                for i, conn in enumerate(conns):
                    send_request(conn, b"hello %d" % i, seq=round_)
                for i, conn in enumerate(conns):
                    msg = conn.recv_message()
                    assert (msg.seq, bytes(msg.data)) == (round_, b"hello %d" % i)
            # calls that take a while: 1,000 of them share 40 workers
            started = time.monotonic()
            for conn in conns:
                send_request(conn, b"sleep:0.005", seq=7)
            for conn in conns:
                assert conn.recv_message().seq == 7
            assert time.monotonic() - started < 20
            assert len(srv.handler.opened) == 1000 and not srv.handler.closed
            assert len(srv.server.pool.workers) <= 40
            assert srv.handler.max_active_total <= 40
        finally:
            for conn in conns:
                conn.close()
        assert wait_until(lambda: len(srv.handler.closed) == 1000, timeout=10)


def test_calls_of_one_connection_never_overlap_while_connections_run_concurrently(registry, tmp_path):
    with running(registry, "thread", TCP4, str(tmp_path)) as srv:
        conns = [srv.connect() for _ in range(8)]
        started = time.monotonic()
        for conn in conns:  # each connection pipelines five 50 ms calls
            conn.send(b"".join(protocol.encode(protocol.MSG_INVOKE, b"sleep:0.05", 1, seq=s) for s in range(5)))
        for conn in conns:
            assert [conn.recv_message().seq for _ in range(5)] == [0, 1, 2, 3, 4]
        elapsed = time.monotonic() - started
        assert max(srv.handler.max_active_per_conn.values()) == 1
        assert srv.handler.max_active_total >= 4
        assert elapsed < 1.5  # sequentially it would take 8 * 5 * 50 ms = 2 s
        for conn in conns:
            conn.close()


def test_idle_connections_cost_no_thread(registry, tmp_path):
    cfg = test_config(THREADPOOL_SIZE=8, THREADPOOL_SIZE_MIN=2)
    threads_before = threading.active_count()
    with running(registry, "thread", TCP4, str(tmp_path), config=cfg) as srv:
        server = srv.server
        assert isinstance(server, ThreadServer)
        conns = [srv.connect() for _ in range(300)]
        for conn in conns:
            assert call(conn, b"once") == b"once"
        # after the linger every connection is parked and every worker idle
        assert wait_until(lambda: len(server.connections) == 300, timeout=5)
        assert wait_until(lambda: server.pool.idle_count == len(server.pool.workers), timeout=2)
        assert len(server.pool.workers) <= 8
        assert threading.active_count() <= threads_before + 8 + 3  # workers, parker, loop
        for conn in conns[::30]:  # parked connections wake up on their next request
            assert call(conn, b"again") == b"again"
        for conn in conns:
            conn.close()


def test_a_busy_client_keeps_its_worker(registry, tmp_path):
    with running(registry, "thread", TCP4, str(tmp_path)) as srv:
        conn = srv.connect()
        for i in range(500):
            assert call(conn, b"x", seq=i) == b"x"
        assert len(srv.handler.threads) == 1  # served by one lingering worker, no hand-offs
        conn.close()


def test_partial_message_survives_parking(registry, tmp_path):
    with running(registry, "thread", TCP4, str(tmp_path)) as srv:
        conn = srv.connect()
        data = protocol.encode(protocol.MSG_INVOKE, b"split across a park", 1, seq=3)
        conn.send(data[:30])  # the header and a bit of the body
        time.sleep(ThreadServer.LINGER + 0.2)  # the worker gives up and parks the connection
        assert wait_until(lambda: len(srv.server.connections) == 1)
        conn.send(data[30:])
        msg = conn.recv_message()
        assert (msg.seq, bytes(msg.data)) == (3, b"split across a park")
        conn.close()


def test_full_pool_queues_instead_of_refusing(registry, tmp_path):
    cfg = test_config(THREADPOOL_SIZE=2, THREADPOOL_SIZE_MIN=1)
    with running(registry, "thread", TCP4, str(tmp_path), config=cfg) as srv:
        busy = [srv.connect() for _ in range(2)]
        for conn in busy:
            send_request(conn, b"sleep:0.5")
        assert wait_until(lambda: srv.handler.active_total == 2)
        started = time.monotonic()
        newcomer = srv.connect()
        assert call(newcomer, b"waited") == b"waited"  # Pyro4 would refuse: "no free workers"
        assert 0.2 < time.monotonic() - started < 3
        for conn in busy:
            assert conn.recv_message().type == protocol.MSG_RESULT
            conn.close()
        newcomer.close()
        assert len(srv.server.pool.workers) <= 2


def test_busy_clients_share_a_small_pool_fairly(registry, tmp_path):
    cfg = test_config(THREADPOOL_SIZE=2, THREADPOOL_SIZE_MIN=1)
    with running(registry, "thread", TCP4, str(tmp_path), config=cfg) as srv:
        counts = [0] * 6
        stop = time.monotonic() + 1.0
        errors_seen: list[BaseException] = []

        def client(index: int) -> None:
            try:
                conn = srv.connect()
                while time.monotonic() < stop:
                    call(conn, b"tick")
                    counts[index] += 1
                conn.close()
            except BaseException as exc:  # pragma: no cover - reported below
                errors_seen.append(exc)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not errors_seen
        assert min(counts) >= 10, counts  # nobody starves behind the two lingering workers
        assert srv.handler.max_active_total <= 2


def test_extra_workers_exit_when_idle(registry, tmp_path):
    cfg = test_config(THREADPOOL_SIZE=10, THREADPOOL_SIZE_MIN=2)
    srv = RunningServer(registry, "thread", TCP4, str(tmp_path), config=cfg)
    try:
        srv.server.pool.idle_timeout = 0.2
        srv.server.LINGER = 0.05  # type: ignore[misc]
        conns = [srv.connect() for _ in range(10)]
        for conn in conns:
            send_request(conn, b"sleep:0.2")
        for conn in conns:
            conn.recv_message()
        assert len(srv.server.pool.workers) == 10
        assert wait_until(lambda: len(srv.server.pool.workers) == 2, timeout=5)
        for conn in conns:  # the pool grows again on demand
            assert call(conn, b"back") == b"back"
            conn.close()
    finally:
        srv.stop()


def test_close_while_a_worker_is_inside_a_long_call(registry, tmp_path):
    srv = RunningServer(registry, "thread", TCP4, str(tmp_path))
    conn = srv.connect()
    idle = srv.connect()
    assert call(idle, b"x") == b"x"
    send_request(conn, b"sleep:0.6")
    assert wait_until(lambda: srv.handler.calls == 2 and srv.handler.active_total == 1)
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < ThreadServer.CLOSE_WAIT + 1
    assert wait_closed_by_server(idle)
    # the running call completes; its connection is closed after it
    assert wait_until(lambda: srv.handler.active_total == 0, timeout=3)
    assert wait_closed_by_server(conn)
    assert wait_until(lambda: len(srv.handler.closed) == 2)


def test_shutdown_from_a_handler_while_others_are_busy(registry, tmp_path):
    srv = RunningServer(registry, "thread", TCP4, str(tmp_path), config=test_config(POLLTIMEOUT=10))
    others = [srv.connect() for _ in range(5)]
    for conn in others:
        send_request(conn, b"sleep:0.3")
    stopper = srv.connect()
    started = time.monotonic()
    assert call(stopper, b"shutdown") == b"shutdown"
    assert srv.thread is not None
    srv.thread.join(2)
    assert not srv.thread.is_alive() and time.monotonic() - started < 0.5
    for conn in others:  # calls in progress still get their answers
        assert conn.recv_message().type == protocol.MSG_RESULT
    srv.server.close()
    for conn in others + [stopper]:
        conn.close()


def test_events_hands_accepted_connections_to_the_pool(registry, tmp_path):
    srv = RunningServer(registry, "thread", TCP4, str(tmp_path), run_loop=False)
    try:
        conn = srv.connect()
        assert wait_until(lambda: bool(select.select(srv.server.sockets, [], [], 0)[0]))
        srv.server.events([srv.listener.sock])
        assert call(conn, b"via events") == b"via events"
        srv.server.events([12345])  # not ours: ignored
        conn.close()
    finally:
        srv.stop()


@pytest.mark.soak
def test_soak_many_clients_many_calls(registry, tmp_path):
    raise_nofile(4000)
    with running(registry, "thread", TCP4, str(tmp_path)) as srv:
        conns = [srv.connect() for _ in range(1500)]
        for round_ in range(20):
            for conn in conns:
                send_request(conn, b"r", seq=round_)
            for conn in conns:
                assert conn.recv_message().seq == round_
        for conn in conns:
            conn.close()


def _recording_hand_offs(monkeypatch) -> list:
    """The connections the accept loop (or events()) hands to the pool from now on."""
    handed: list = []
    adopt = ThreadServer._adopt

    def recording(self, conn):
        handed.append(conn)
        adopt(self, conn)

    monkeypatch.setattr(ThreadServer, "_adopt", recording)
    return handed


def _sequential_calls(srv, count: int) -> None:
    """``count`` connections one after the other, each waiting until the worker is idle again."""
    pool = srv.server.pool
    for i in range(count):
        conn = srv.connect()
        assert call(conn, b"n%d" % i) == b"n%d" % i
        conn.close()
        assert wait_until(lambda: pool.idle_count == len(pool.workers) > 0)
        time.sleep(0.02)  # (and back in its wait)


@pytest.mark.skipif(not thread_module._DOORS, reason="needs epoll with EPOLLEXCLUSIVE and eventfd (Linux)")
@pytest.mark.parametrize("endpoint", [TCP4, ENDPOINTS[2], MEM], ids=["tcp4", "unix", "mem"])
def test_idle_workers_accept_new_connections_themselves(registry, endpoint, tmp_path, monkeypatch):
    if endpoint.skip:
        pytest.skip(endpoint.skip)
    handed = _recording_hand_offs(monkeypatch)
    with running(registry, "thread", endpoint, str(tmp_path)) as srv:
        _sequential_calls(srv, 20)
        assert len(srv.server.pool.workers) == 1
        assert all(name.startswith("pyroplug-worker") for name in srv.handler.threads)
    assert len(handed) <= 1  # the first connection: no worker existed yet


def test_without_doors_the_accept_loop_hands_every_connection_over(registry, tmp_path, monkeypatch):
    handed = _recording_hand_offs(monkeypatch)
    monkeypatch.setattr(ThreadServer, "WORKERS_ACCEPT", False)
    with running(registry, "thread", TCP4, str(tmp_path)) as srv:
        _sequential_calls(srv, 5)
    assert len(handed) == 5
    handed.clear()
    monkeypatch.setattr(ThreadServer, "WORKERS_ACCEPT", True)
    monkeypatch.setattr(MemoryListener, "concurrent_accept", False)  # a listener that must accept in one thread
    with running(registry, "thread", MEM, str(tmp_path)) as srv:
        _sequential_calls(srv, 5)
    assert len(handed) == 5


@pytest.mark.skipif(not thread_module._DOORS, reason="needs epoll with EPOLLEXCLUSIVE and eventfd (Linux)")
def test_a_job_handed_to_a_worker_that_just_accepted(registry, tmp_path):
    """A parked connection's request and a new connection reach the same idle worker at once: both served."""
    cfg = test_config(THREADPOOL_SIZE=4)
    for _ in range(5):
        with running(registry, "thread", TCP4, str(tmp_path), config=cfg) as srv:
            pool = srv.server.pool
            parked = srv.connect()
            assert call(parked, b"first") == b"first"
            assert wait_until(lambda: len(srv.server.connections) == 1)  # parked after the linger
            assert wait_until(lambda pool=pool: pool.idle_count == len(pool.workers) == 1)
            time.sleep(0.02)
            with pool._lock:  # the parker's hand-off and the worker's accept both wait for the lock
                send_request(parked, b"parked")
                fresh = srv.connect()
                send_request(fresh, b"fresh")
                time.sleep(0.1)
            assert bytes(parked.recv_message().data) == b"parked"
            assert bytes(fresh.recv_message().data) == b"fresh"
            assert call(fresh, b"again", seq=1) == b"again"
            parked.close()
            fresh.close()


@pytest.mark.skipif(not thread_module._DOORS, reason="needs epoll with EPOLLEXCLUSIVE and eventfd (Linux)")
def test_idle_workers_with_doors_exit_and_close_them(registry, tmp_path, monkeypatch):
    monkeypatch.setattr(ThreadServer, "WORKER_IDLE_TIMEOUT", 0.2)
    cfg = test_config(THREADPOOL_SIZE_MIN=1, THREADPOOL_SIZE=8)
    with running(registry, "thread", TCP4, str(tmp_path), config=cfg) as srv:
        conns = [srv.connect() for _ in range(4)]
        for conn in conns:
            send_request(conn, b"sleep:0.2")
        for conn in conns:
            assert conn.recv_message().data
        for conn in conns:
            conn.close()
        assert wait_until(lambda: len(srv.server.pool.workers) == 1, timeout=10)
        _sequential_calls(srv, 3)  # the one left still accepts


@pytest.fixture
def door_waits(monkeypatch) -> list:
    """One entry per wait of an idle worker at its door from now on."""
    waits: list = []
    wait = thread_module._Door.wait

    def counting(door, timeout):
        waits.append(timeout)
        return wait(door, timeout)

    monkeypatch.setattr(thread_module._Door, "wait", counting)
    return waits


@pytest.mark.skipif(not thread_module._DOORS, reason="needs epoll with EPOLLEXCLUSIVE and eventfd (Linux)")
def test_idle_workers_accept_only_while_the_request_loop_runs(registry, tmp_path, door_waits):
    """A connection that arrives while no loop runs waits for the next loop, and no idle worker spins on it."""
    srv = RunningServer(registry, "thread", TCP4, str(tmp_path), run_loop=False)
    running_loop = threading.Event()
    running_loop.set()
    loop = threading.Thread(target=srv.server.loop, args=(running_loop.is_set,), daemon=True)
    loop.start()
    try:
        _sequential_calls(srv, 3)  # a worker exists, idle at its door
        running_loop.clear()  # the loop returns at its next wake-up (POLLTIMEOUT)
        thread_module._poke(srv.server._loop_wake_w)
        loop.join(5)
        assert not loop.is_alive()
        door_waits.clear()
        late = srv.connect()
        send_request(late, b"late")
        time.sleep(0.3)
        assert len(door_waits) <= 3  # woken once, then the door stopped watching: no busy loop
        assert select.select([late.sock], [], [], 0)[0] == []  # not served while no loop runs
        running_loop.set()
        loop = threading.Thread(target=srv.server.loop, args=(running_loop.is_set,), daemon=True)
        loop.start()
        assert bytes(late.recv_message().data) == b"late"
        late.close()
        _sequential_calls(srv, 3)  # the doors watch again
    finally:
        srv.server.shutdown()
        loop.join(5)
        srv.server.close()


@pytest.mark.skipif(not thread_module._DOORS, reason="needs epoll with EPOLLEXCLUSIVE and eventfd (Linux)")
def test_no_busy_idle_workers_between_shutdown_and_close(registry, tmp_path, door_waits):
    srv = RunningServer(registry, "thread", TCP4, str(tmp_path))
    try:
        _sequential_calls(srv, 2)
        srv.server.shutdown()
        srv.thread.join(5)
        door_waits.clear()
        pending = srv.connect()
        send_request(pending, b"x")
        time.sleep(0.3)
        assert len(door_waits) <= 3
        pending.close()
    finally:
        srv.stop()
