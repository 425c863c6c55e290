"""The tcp, unix and memory transports: listen, connect, options, locations and errors."""

from __future__ import annotations

import os
import select
import socket
import threading
import time

import pytest

from pyroplug.core import errors, protocol
from pyroplug.core.transport import LISTEN_BACKLOG, Connection, Listener, receive_timeout
from pyroplug.core.uri import URI
from pyroplug.plugins.transports import tcp, unix
from pyroplug.testing import memory_transport
from tests.plugins.servers.support import (
    HAS_UNIX,
    IS_LINUX,
    endpoint_params,
    ipv6_available,
    make_registry,
    test_config,
    uri_for,
)

pytestmark = pytest.mark.timeout(30)

needs_ipv6 = pytest.mark.skipif(not ipv6_available(), reason="IPv6 loopback (::1) is not available")
needs_unix = pytest.mark.skipif(not HAS_UNIX, reason="no AF_UNIX on this platform")
needs_abstract = pytest.mark.skipif(not (HAS_UNIX and IS_LINUX), reason="abstract unix sockets need Linux")


@pytest.fixture(scope="module")
def registry():
    return make_registry()


def accept_one(listener: Listener, timeout: float = 5.0) -> Connection:
    readable, _, _ = select.select([listener], [], [], timeout)
    assert readable, "no connection became pending"
    conn = listener.accept()
    assert conn is not None
    return conn


def roundtrip(client: Connection, server: Connection) -> None:
    head, payload = protocol.encode_parts(protocol.MSG_INVOKE, b"ping" * 100, 1, seq=7)
    client.send_parts(head, payload)
    msg = server.recv_message()
    assert (msg.type, msg.seq, bytes(msg.data)) == (protocol.MSG_INVOKE, 7, b"ping" * 100)
    big = os.urandom(300_000)  # the gathering-send path; larger than the socket buffers
    sender = threading.Thread(target=server.send_parts, args=protocol.encode_parts(protocol.MSG_RESULT, big, 1, seq=7))
    sender.start()
    assert bytes(client.recv_message().data) == big
    sender.join(5)


# --- every transport ---------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", endpoint_params())
def test_listen_connect_roundtrip(registry, endpoint, tmp_path):
    cfg = test_config()
    transport = registry.transport_for(endpoint.kind)(cfg)
    listener = endpoint.listen(transport, str(tmp_path))
    try:
        uri = uri_for(listener)
        assert uri.location_kind == endpoint.kind
        assert listener.accept() is None  # nothing pending: never blocks
        client = registry.transport_for(uri.location_kind)(cfg).connect(uri)
        server = accept_one(listener)
        try:
            roundtrip(client, server)
            assert client.family() == client.family  # Pyro4's call spelling and the property
            client.close()
            with pytest.raises(errors.ConnectionClosedError):
                server.recv_message()
        finally:
            client.close()
            server.close()
    finally:
        listener.close()


@pytest.mark.parametrize("endpoint", endpoint_params())
def test_commtimeout_applies_to_both_ends(registry, endpoint, tmp_path):
    cfg = test_config(COMMTIMEOUT=0.2)
    transport = registry.transport_for(endpoint.kind)(cfg)
    listener = endpoint.listen(transport, str(tmp_path))
    try:
        client = transport.connect(uri_for(listener))
        server = accept_one(listener)
        assert client.gettimeout() == pytest.approx(0.2)
        assert server.gettimeout() == pytest.approx(0.2)
        with pytest.raises(errors.TimeoutError):
            server.recv_message()
        client.close()
        server.close()
        explicit = transport.connect(uri_for(listener), timeout=0)  # 0: blocking
        assert explicit.gettimeout() is None
        explicit.close()
    finally:
        listener.close()


@pytest.mark.parametrize("endpoint", endpoint_params())
def test_listener_fileno_is_readable_only_while_pending(registry, endpoint, tmp_path):
    transport = registry.transport_for(endpoint.kind)(test_config())
    listener = endpoint.listen(transport, str(tmp_path))
    try:
        assert select.select([listener], [], [], 0)[0] == []
        clients = [transport.connect(uri_for(listener)) for _ in range(3)]
        accepted = []
        assert select.select([listener], [], [], 5)[0] == [listener]
        while len(accepted) < 3:
            select.select([listener], [], [], 5)
            conn = listener.accept()
            if conn is not None:
                accepted.append(conn)
        assert listener.accept() is None
        assert select.select([listener], [], [], 0.05)[0] == []
        for conn in clients + accepted:
            conn.close()
    finally:
        listener.close()


# --- tcp ---------------------------------------------------------------------------------------


def tcp_transport(**items):
    return tcp.TCPTransport(test_config(**items))


def test_tcp_location_strings_and_free_port():
    transport = tcp_transport()
    listener = transport.listen("127.0.0.1", 0)
    try:
        assert listener.port and listener.port > 0
        assert listener.location == f"127.0.0.1:{listener.port}"
    finally:
        listener.close()
    listener = transport.listen("localhost", 0)
    try:
        assert listener.location == f"localhost:{listener.port}"  # the host as given, like Pyro4
    finally:
        listener.close()
    listener = transport.listen(None, 0)  # None: the config's HOST
    try:
        assert listener.location.startswith("localhost:")
    finally:
        listener.close()
    assert tcp.format_location("::1", 5) == "[::1]:5"
    assert tcp.format_location("host", 5) == "host:5"


@needs_ipv6
def test_tcp_ipv6_bracketed_host_and_location():
    transport = tcp_transport()
    listener = transport.listen("[::1]", 0)
    try:
        assert listener.location == f"[::1]:{listener.port}"
        uri = URI(f"PYRO:obj@[::1]:{listener.port}")
        assert uri.host == "::1"
        conn = transport.connect(uri)
        assert conn.family == "IPv6"
        conn.close()
    finally:
        listener.close()


@needs_ipv6
def test_tcp_prefer_ip_version_6_binds_ipv6_wildcard():
    listener = tcp_transport(PREFER_IP_VERSION=6).listen("", 0)
    try:
        assert listener.sock.family == socket.AF_INET6
        assert listener.location == f"[::]:{listener.port}"
    finally:
        listener.close()
    listener = tcp_transport(PREFER_IP_VERSION=4).listen("", 0)
    try:
        assert listener.sock.family == socket.AF_INET
        assert listener.location == f"0.0.0.0:{listener.port}"
    finally:
        listener.close()


@pytest.mark.skipif(not IS_LINUX, reason="relies on Linux copying SO_RCVTIMEO to accepted sockets")
def test_a_tcp_listener_presets_the_receive_wait_of_the_connections_it_accepts():
    transport = tcp_transport()
    listener = transport.listen("127.0.0.1", 0)
    try:
        assert listener.set_receive_wait(0.02)
        client = transport.connect(uri_for(listener))
        client.send(protocol.encode(protocol.MSG_PING, b"first", 3))
        server = accept_one(listener)
        assert server.receive_wait == 0.02
        assert receive_timeout(server.sock) >= 0.02  # the kernel's copy (rounded up to its tick)
        assert server.set_receive_wait(0.02)  # already in effect
        assert bytes(server.receive().data) == b"first"
        started = time.monotonic()
        assert server.receive() is None  # nothing came within the wait: no message, no error
        assert time.monotonic() - started >= 0.015
        client.close()
        server.close()
    finally:
        listener.close()


@pytest.mark.parametrize("setting", [{"COMMTIMEOUT": 1.0}, {"SSL": True}])
def test_no_preset_receive_wait_where_python_or_tls_owns_the_socket(setting):
    transport = tcp_transport(**setting)
    listener = socket.socket()
    try:
        tcp_listener = tcp.TCPListener(listener, "127.0.0.1:0", transport.config)
        assert tcp_listener.set_receive_wait(0.02) is False
        assert tcp_listener.receive_wait == 0.0
        assert receive_timeout(listener) == 0.0
    finally:
        listener.close()


def test_tcp_socket_options_on_both_ends():
    transport = tcp_transport(SOCK_NODELAY=False)  # TCP_NODELAY is set regardless
    listener = transport.listen("127.0.0.1", 0)
    try:
        assert listener.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert listener.sock.getblocking() is False
        client = transport.connect(uri_for(listener))
        server = accept_one(listener)
        for conn in (client, server):
            sock = conn.sock
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            assert sock.getblocking()
        client.close()
        server.close()
    finally:
        listener.close()
    listener = tcp_transport(SOCK_REUSE=False).listen("127.0.0.1", 0)
    try:
        assert not listener.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    finally:
        listener.close()


def test_tcp_backlog_takes_a_burst_of_connects():
    assert LISTEN_BACKLOG >= 1024
    transport = tcp_transport()
    listener = transport.listen("127.0.0.1", 0)
    clients = []
    try:
        for _ in range(1100):  # nobody accepts: the backlog holds them all
            sock = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
            clients.append(sock)
    finally:
        for sock in clients:
            sock.close()
        listener.close()


def test_tcp_connection_refused_is_a_clear_communication_error():
    port = tcp.socketutil.findProbablyUnusedPort()
    with pytest.raises(errors.CommunicationError, match=rf"cannot connect to 127\.0\.0\.1:{port}: connection refused"):
        tcp_transport().connect(URI(f"PYRO:obj@127.0.0.1:{port}"))


def test_tcp_unresolvable_host():
    with pytest.raises(errors.CommunicationError, match="cannot resolve host"):
        tcp_transport().connect(URI("PYRO:obj@no-such-host.invalid:5555"))


def test_tcp_bind_conflict_and_wrong_arguments():
    transport = tcp_transport(SOCK_REUSE=False)
    listener = transport.listen("127.0.0.1", 0)
    try:
        with pytest.raises(errors.CommunicationError, match="cannot bind"):
            transport.listen("127.0.0.1", listener.port)
        with pytest.raises(errors.CommunicationError, match="not an address"):
            transport.listen(address="/tmp/x")
        with pytest.raises(errors.CommunicationError, match="not a tcp location"):
            transport.connect(URI("PYRO:obj@./u:/tmp/x"))
    finally:
        listener.close()


def test_listener_accept_after_close_raises():
    listener = tcp_transport().listen("127.0.0.1", 0)
    listener.close()
    with pytest.raises(errors.CommunicationError):
        listener.accept()


# --- unix --------------------------------------------------------------------------------------


@needs_unix
def test_unix_socket_file_removed_on_close(tmp_path):
    path = str(tmp_path / "srv.sock")
    listener = unix.UnixTransport(test_config()).listen(address=path)
    assert listener.location == "./u:" + path
    assert os.path.exists(path)
    listener.close()
    assert not os.path.exists(path)
    listener.close()  # idempotent


@needs_unix
def test_unix_close_leaves_a_successors_socket_file(tmp_path):
    path = str(tmp_path / "srv.sock")
    transport = unix.UnixTransport(test_config())
    first = transport.listen(address=path)
    first.sock.close()  # the first server died without cleaning up ...
    time.sleep(0.05)  # file timestamps can be coarse (a clock tick)
    second = transport.listen(address=path)  # ... so its stale file is replaced
    first.close()
    assert os.path.exists(path)  # not the first listener's file any more
    second.close()
    assert not os.path.exists(path)


@needs_unix
def test_unix_stale_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    assert os.path.exists(path)
    listener = unix.UnixTransport(test_config()).listen(address=path)
    try:
        conn = unix.UnixTransport(test_config()).connect(URI("PYRO:obj@./u:" + path))
        assert conn.family == "Unix"
        conn.close()
    finally:
        listener.close()


@needs_unix
def test_unix_live_socket_and_regular_file_are_not_replaced(tmp_path):
    path = str(tmp_path / "live.sock")
    transport = unix.UnixTransport(test_config())
    listener = transport.listen(address=path)
    try:
        with pytest.raises(errors.CommunicationError, match="already in use"):
            transport.listen(address=path)
    finally:
        listener.close()
    regular = tmp_path / "file.txt"
    regular.write_text("keep me")
    with pytest.raises(errors.CommunicationError, match="not a socket"):
        transport.listen(address=str(regular))
    assert regular.read_text() == "keep me"


@needs_unix
def test_unix_connect_errors(tmp_path):
    transport = unix.UnixTransport(test_config())
    with pytest.raises(errors.CommunicationError, match="no server listening"):
        transport.connect(URI("PYRO:obj@./u:" + str(tmp_path / "missing.sock")))
    with pytest.raises(errors.CommunicationError, match="needs an address"):
        transport.listen()


@needs_abstract
def test_unix_abstract_namespace_creates_no_file(tmp_path):
    name = "\0pyroplug-abstract-test-" + os.urandom(6).hex()
    transport = unix.UnixTransport(test_config())
    listener = transport.listen(address=name)
    try:
        assert listener.location == "./u:" + name
        uri = URI("PYRO:obj@" + listener.location)
        assert uri.address == name
        conn = transport.connect(uri)
        server = accept_one(listener)
        roundtrip(conn, server)
        conn.close()
        server.close()
    finally:
        listener.close()
    with pytest.raises(errors.CommunicationError):
        transport.connect(URI("PYRO:obj@./u:" + name))


def test_unix_without_af_unix_explains(monkeypatch):
    monkeypatch.delattr(socket, "AF_UNIX", raising=False)
    transport = unix.UnixTransport(test_config())
    with pytest.raises(errors.CommunicationError, match="not supported on this platform"):
        transport.listen(address="/tmp/whatever.sock")
    with pytest.raises(errors.CommunicationError, match="not supported on this platform"):
        transport.connect(URI("PYRO:obj@./u:/tmp/whatever.sock"))


# --- memory ------------------------------------------------------------------------------------


def test_memory_transport_registers_like_a_third_party(registry):
    assert registry.transport_for("mem") is memory_transport.MemoryTransport
    assert "transports: mem" in registry.provided_by(memory_transport)


def test_memory_transport_names_and_errors():
    transport = memory_transport.MemoryTransport(test_config())
    with pytest.raises(errors.CommunicationError, match="no listener"):
        transport.connect(URI("PYRO:obj@./mem:nobody-here"))
    listener = transport.listen(address="named-one")
    try:
        assert listener.location == "./mem:named-one"
        assert "named-one" in memory_transport.listeners()
        with pytest.raises(errors.CommunicationError, match="already in use"):
            transport.listen(address="named-one")
        anonymous = transport.listen()
        assert anonymous.location.startswith("./mem:listener-")
        anonymous.close()
        pending = transport.connect(URI("PYRO:obj@./mem:named-one"))
    finally:
        listener.close()
    assert "named-one" not in memory_transport.listeners()
    # the queued server end was closed with the listener: the client sees EOF
    with pytest.raises(errors.ConnectionClosedError):
        pending.recv_message()
    with pytest.raises(errors.CommunicationError):
        transport.connect(URI("PYRO:obj@./mem:named-one"))


def test_memory_transport_concurrent_connects():
    transport = memory_transport.MemoryTransport(test_config())
    listener = transport.listen()
    uri = uri_for(listener)
    clients: list[Connection] = []
    lock = threading.Lock()

    def connect_some():
        for _ in range(50):
            conn = transport.connect(uri)
            with lock:
                clients.append(conn)

    threads = [threading.Thread(target=connect_some) for _ in range(4)]
    for t in threads:
        t.start()
    accepted = 0
    while accepted < 200:
        assert select.select([listener], [], [], 5)[0]
        while listener.accept() is not None:
            accepted += 1
    for t in threads:
        t.join()
    assert select.select([listener], [], [], 0)[0] == []
    for conn in clients:
        conn.close()
    listener.close()
