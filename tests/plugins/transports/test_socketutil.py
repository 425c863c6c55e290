"""pyroplug.socketutil: Pyro4's socketutil names and behaviour."""

from __future__ import annotations

import errno
import socket
import threading

import pytest

from pyroplug import socketutil
from pyroplug.core import errors
from pyroplug.core.config import config as global_config
from tests.plugins.servers.support import HAS_UNIX, ipv6_available

pytestmark = pytest.mark.timeout(30)
needs_ipv6 = pytest.mark.skipif(not ipv6_available(), reason="IPv6 loopback (::1) is not available")


@pytest.fixture
def prefer_ip(monkeypatch):
    def setter(version: int) -> None:
        monkeypatch.setattr(global_config, "PREFER_IP_VERSION", version)

    return setter


def test_errno_lists():
    assert errno.EINTR in socketutil.ERRNO_RETRIES and errno.EAGAIN in socketutil.ERRNO_RETRIES
    assert socketutil.ERRNO_BADF[0] == errno.EBADF
    assert socketutil.ERRNO_ENOTSOCK[0] == errno.ENOTSOCK
    assert socketutil.ERRNO_EADDRINUSE[0] == errno.EADDRINUSE
    assert socketutil.ERRNO_EADDRNOTAVAIL[0] == errno.EADDRNOTAVAIL


def test_ip_version_and_address(prefer_ip):
    assert socketutil.getIpVersion("127.0.0.1") == 4
    assert socketutil.getIpAddress("127.0.0.1") == "127.0.0.1"
    prefer_ip(4)
    assert socketutil.getIpAddress("localhost") == "127.0.0.1"
    assert socketutil.getIpAddress("localhost", ipVersion=4) == "127.0.0.1"
    assert socketutil.getIpAddress(None, ipVersion=0)  # this machine's name
    with pytest.raises(ValueError):
        socketutil.getIpAddress("localhost", ipVersion=5)


@needs_ipv6
def test_ipv6_addresses():
    assert socketutil.getIpVersion("::1") == 6
    assert socketutil.getIpAddress("::1") == "::1"
    assert socketutil.getIpAddress("::1", ipVersion=6) == "::1"


def test_resolve_prefers_the_configured_version():
    family, sockaddr = socketutil.resolve("127.0.0.1", 80, 4)[0]
    assert family == socket.AF_INET and sockaddr[:2] == ("127.0.0.1", 80)
    assert socketutil.resolve("[::1]", 80, 4)[0][0] == socket.AF_INET6  # a literal wins over the preference
    assert socketutil.resolve("", 0, 4, passive=True)[0][1][0] == "0.0.0.0"
    assert socketutil.resolve("", 0, 6, passive=True)[0][1][0] == "::"
    with pytest.raises(ValueError):
        socketutil.resolve("localhost", 80, 7)


def test_interface_address():
    assert socketutil.getInterfaceAddress("127.0.0.1") == "127.0.0.1"


def test_find_and_bind_unused_ports():
    port = socketutil.findProbablyUnusedPort()
    assert 0 < port < 65536
    with socket.socket() as sock:
        port = socketutil.bindOnUnusedPort(sock)
        assert sock.getsockname() == ("127.0.0.1", port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert socketutil.bindOnUnusedPort(sock, "127.0.0.1") > 0
    if HAS_UNIX:
        with socket.socket(socket.AF_UNIX) as sock, pytest.raises(errors.CommunicationError):
            socketutil.bindOnUnusedPort(sock)


@needs_ipv6
def test_bind_unused_port_ipv6():
    with socket.socket(socket.AF_INET6) as sock:
        port = socketutil.bindOnUnusedPort(sock)
        assert sock.getsockname()[:2] == ("::1", port)


def test_create_socket_bind_and_connect():
    server = socketutil.createSocket(bind=("127.0.0.1", 0), reuseaddr=True, timeout=2, noinherit=True)
    try:
        assert server.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert server.gettimeout() == 2
        assert not server.get_inheritable()
        client = socketutil.createSocket(connect=server.getsockname(), timeout=0)
        try:
            assert client.gettimeout() is None  # 0 means blocking
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # nodelay=True default
            assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            accepted, _ = server.accept()
            socketutil.sendData(client, b"hello world")
            assert socketutil.receiveData(accepted, 11) == b"hello world"
            accepted.close()
        finally:
            client.close()
    finally:
        server.close()
    plain = socketutil.createSocket()
    assert plain.family == socket.AF_INET
    plain.close()
    with pytest.raises(ValueError):
        socketutil.createSocket(bind=("127.0.0.1", 0), connect=("127.0.0.1", 1))
    with pytest.raises(ValueError):
        socketutil.createSocket(bind=["127.0.0.1", 0])
    with pytest.raises(ValueError):
        socketutil.createSocket(bind=("127.0.0.1", 0), ipv6=True)
    with pytest.raises(OSError):
        socketutil.createSocket(connect=("127.0.0.1", socketutil.findProbablyUnusedPort()))


@needs_ipv6
def test_create_socket_ipv6():
    server = socketutil.createSocket(bind=("::1", 0))
    try:
        assert server.family == socket.AF_INET6
        assert socketutil.family_str(server) == "IPv6"
        client = socketutil.createSocket(connect=("::1", server.getsockname()[1]))
        client.close()
    finally:
        server.close()
    wildcard = socketutil.createSocket(bind=("", 0), ipv6=True)
    assert wildcard.family == socket.AF_INET6
    wildcard.close()


@pytest.mark.skipif(not HAS_UNIX, reason="no AF_UNIX on this platform")
def test_create_socket_unix(tmp_path):
    path = str(tmp_path / "u.sock")
    server = socketutil.createSocket(bind=path)
    try:
        assert socketutil.family_str(server) == "Unix"
        client = socketutil.createSocket(connect=path)
        client.close()
    finally:
        server.close()


def test_create_broadcast_socket():
    sock = socketutil.createBroadcastSocket(bind=("127.0.0.1", 0), reuseaddr=True, timeout=1)
    try:
        assert sock.type == socket.SOCK_DGRAM
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        assert sock.gettimeout() == 1
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()
    unbound = socketutil.createBroadcastSocket()
    unbound.close()
    with pytest.raises(ValueError):
        socketutil.createBroadcastSocket(bind="not-a-tuple")


def test_option_setters_ignore_unsupported_sockets():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        socketutil.setNoDelay(udp)  # not TCP: silently ignored
        socketutil.setReuseAddr(udp)
        socketutil.setKeepalive(udp)
        socketutil.setNoInherit(udp)
        assert udp.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)


def test_receive_data_errors():
    a, b = socket.socketpair()
    try:
        a.sendall(b"part")
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(errors.ConnectionClosedError, match="not enough data") as info:
            socketutil.receiveData(b, 10)
        assert info.value.partialData == b"part"
    finally:
        a.close()
        b.close()
    a, b = socket.socketpair()
    try:
        b.settimeout(0.05)
        with pytest.raises(errors.TimeoutError, match="receiving: timeout"):
            socketutil.receiveData(b, 10)
    finally:
        a.close()
        b.close()


def test_receive_data_without_waitall(monkeypatch):
    monkeypatch.setattr(global_config, "USE_MSG_WAITALL", False)
    a, b = socket.socketpair()
    try:
        sender = threading.Thread(target=lambda: [a.sendall(bytes([i]) * 1000) for i in range(100)])
        sender.start()
        data = socketutil.receiveData(b, 100_000)
        sender.join()
        assert len(data) == 100_000 and data[-1] == 99
    finally:
        a.close()
        b.close()


def test_send_data_with_timeout_and_errors():
    a, b = socket.socketpair()
    try:
        a.settimeout(2)
        payload = b"x" * 1_000_000
        reader = threading.Thread(target=lambda: socketutil.receiveData(b, len(payload)))
        reader.start()
        socketutil.sendData(a, payload)  # the send loop of sockets with a timeout
        reader.join()
        a.settimeout(0.05)
        with pytest.raises(errors.TimeoutError, match="sending: timeout"):
            socketutil.sendData(a, payload * 8)  # nobody reads
    finally:
        a.close()
        b.close()
    a, b = socket.socketpair()
    b.close()
    with pytest.raises(errors.ConnectionClosedError, match="sending: connection lost"):
        socketutil.sendData(a, b"x" * 1_000_000)
    a.close()


def test_interrupt_socket_wakes_a_blocked_accept():
    server = socketutil.createSocket(bind=("127.0.0.1", 0), timeout=5)
    try:
        result = []
        waiter = threading.Thread(target=lambda: result.append(server.accept()))
        waiter.start()
        socketutil.interruptSocket(server.getsockname())
        waiter.join(5)
        assert result and result[0][0].recv(16) == b"!" * 16
        result[0][0].close()
    finally:
        server.close()
    socketutil.interruptSocket(("127.0.0.1", socketutil.findProbablyUnusedPort()))  # nobody there: no error


def test_socket_connection_is_pyro4_compatible():
    a, b = socket.socketpair()
    with socketutil.SocketConnection(a, objectId="obj") as conn:
        assert conn.objectId == "obj"
        assert conn.family() == "Unix" == conn.family
        conn.timeout = 1.5
        assert conn.timeout == 1.5 == conn.getTimeout()
        conn.setTimeout(None)
        b.sendall(b"12345")
        assert conn.recv(5) == b"12345"
        conn.send(b"abc")
        assert b.recv(3) == b"abc"
        assert conn.getpeercert() is None
        assert conn.pyroInstances == {} and len(conn.tracked_resources) == 0
    assert a.fileno() == -1  # closed by the with block
    b.close()
    kept = socketutil.SocketConnection(socket.socket(), keep_open=True)
    kept.close()
    assert kept.sock.fileno() != -1
    kept.sock.close()


def test_ssl_context_errors_and_caching(tmp_path):
    with pytest.raises(ValueError, match="both server cert and client cert"):
        socketutil.getSSLcontext(servercert="a", clientcert="b")
    with pytest.raises(OSError, match="server cert file not found"):
        socketutil.getSSLcontext(servercert=str(tmp_path / "missing.pem"))
    client = socketutil.getSSLcontext()
    assert socketutil.getSSLcontext() is client  # one per process


@pytest.mark.parametrize(
    ("host", "version", "expected"),
    [
        ("127.0.0.1", 4, [(socket.AF_INET, ("127.0.0.1", 9))]),
        ("127.0.0.1", 0, [(socket.AF_INET, ("127.0.0.1", 9))]),
        ("::1", 0, [(socket.AF_INET6, ("::1", 9, 0, 0))]),
        ("[::1]", 6, [(socket.AF_INET6, ("::1", 9, 0, 0))]),
    ],
)
def test_resolve_numeric_addresses_without_the_resolver(monkeypatch, host, version, expected):
    def no_resolver(*args):
        raise AssertionError(f"getaddrinfo{args} called for a numeric address")

    monkeypatch.setattr(socket, "getaddrinfo", no_resolver)
    assert socketutil.resolve(host, 9, version) == expected


@pytest.mark.parametrize(("host", "version"), [("127.1", 4), ("127.0.0.1", 6), ("localhost", 4), ("::1", 4)])
def test_resolve_leaves_other_hosts_to_the_resolver(monkeypatch, host, version):
    asked = []

    def resolver(host, port, *args):
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    socketutil.resolve(host, 9, version)
    assert asked == [host.strip("[]")]
