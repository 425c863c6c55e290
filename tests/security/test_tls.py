"""TLS through the SSL and SSL_* config items: contexts, one-way and two-way TLS on both server types over
tcp and unix sockets, refused certificates, and TLS clients that stall (they must not block a server)."""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pyroplug import socketutil
from pyroplug.core import errors, protocol
from pyroplug.core.config import config as global_config
from pyroplug.core.daemon import Daemon
from pyroplug.core.protocol import MSG_CONNECTOK, MSG_INVOKE, MSG_RESULT
from pyroplug.core.proxy import Proxy
from pyroplug.testing.certs import PKI
from tests.conftest import HAS_IPV6, HAS_UNIX
from tests.security.support import (
    MARSHAL_ID,
    RawClient,
    Served,
    connect_payload,
    invoke_payload,
    make_config,
    marshal_loads,
    proxy,
    serving,
    wait_until,
)


def server_items(pki: PKI, two_way: bool = False, **extra: Any) -> dict[str, Any]:
    items = dict(SSL=True, SSL_SERVERCERT=pki.server.cert, SSL_SERVERKEY=pki.server.key, SSL_CACERTS=pki.ca.cert,
                 SSL_REQUIRECLIENTCERT=two_way)
    items.update(extra)
    return items


def client_items(pki: PKI, cert: bool = False, **extra: Any) -> dict[str, Any]:
    items: dict[str, Any] = dict(SSL=True, SSL_CACERTS=pki.ca.cert)
    if cert:
        items.update(SSL_CLIENTCERT=pki.client.cert, SSL_CLIENTKEY=pki.client.key)
    items.update(extra)
    return items


class CertDaemon(Daemon):
    """Records the client certificate's common name seen by validateHandshake."""

    log: Any

    def validateHandshake(self, conn: Any, data: Any) -> Any:  # noqa: N802 - Pyro4 API
        cert = conn.getpeercert()
        subject = dict(item for rdn in cert["subject"] for item in rdn) if cert else {}
        self.log.add(("handshake", subject.get("commonName")))
        return {"cn": subject.get("commonName")}


@pytest.fixture(params=["tcp", "unix"])
def where(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[dict[str, Any]]:
    """Where the daemon listens: 127.0.0.1 or a unix socket."""
    if request.param == "unix":
        if not HAS_UNIX:
            pytest.skip("no unix sockets")
        yield {"unixsocket": str(tmp_path / "tls.sock")}
    else:
        yield {}


# ---------------------------------------------------------------- contexts (unit)
def test_contexts_per_role_and_settings(pki: PKI) -> None:
    one_way = socketutil.getSSLcontext(servercert=pki.server.cert, serverkey=pki.server.key, requireclientcert=False)
    two_way = socketutil.getSSLcontext(servercert=pki.server.cert, serverkey=pki.server.key, cacerts=pki.ca.cert,
                                       requireclientcert=True)
    assert one_way.verify_mode == ssl.CERT_NONE and two_way.verify_mode == ssl.CERT_REQUIRED
    assert one_way is socketutil.getSSLcontext(servercert=pki.server.cert, serverkey=pki.server.key,
                                               requireclientcert=False)  # cached per process
    client = socketutil.getSSLcontext(cacerts=pki.ca.cert)
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    assert client is socketutil.getSSLcontext(cacerts=pki.ca.cert)
    unchecked = socketutil.getSSLcontext(cacerts=pki.ca.cert, checkhostname=False)
    assert unchecked is not client and not unchecked.check_hostname and unchecked.verify_mode == ssl.CERT_REQUIRED
    assert socketutil.getSSLcontext(cacerts=pki.capath) is not client  # a CA directory works too


def test_requireclientcert_defaults_to_the_global_config(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(global_config, "SSL_REQUIRECLIENTCERT", True)
    ctx = socketutil.getSSLcontext(servercert=pki.server.cert, serverkey=pki.server.key, cacerts=pki.ca.cert)
    assert ctx.verify_mode == ssl.CERT_REQUIRED


def test_context_reloaded_when_a_file_changes(pki: PKI, tmp_path: Any) -> None:
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(open(pki.ca.cert, "rb").read())
    first = socketutil.getSSLcontext(cacerts=str(cafile))
    stat = os.stat(cafile)
    os.utime(cafile, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = socketutil.getSSLcontext(cacerts=str(cafile))
    assert second is not first  # renewed files: a new context for new connections
    assert socketutil.getSSLcontext(cacerts=str(cafile)) is second  # which is then cached in its place


def test_context_errors(pki: PKI, tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="both server cert and client cert"):
        socketutil.getSSLcontext(servercert=pki.server.cert, clientcert=pki.client.cert)
    with pytest.raises(OSError, match="server cert file not found"):
        socketutil.getSSLcontext(servercert=str(tmp_path / "missing.pem"))
    with pytest.raises(OSError, match="server key file not found"):
        socketutil.getSSLcontext(servercert=pki.server.cert, serverkey=str(tmp_path / "missing.key"))
    with pytest.raises(OSError, match="client cert file not found"):
        socketutil.getSSLcontext(clientcert=str(tmp_path / "missing.pem"))
    with pytest.raises(OSError, match="client key file not found"):
        socketutil.getSSLcontext(clientcert=pki.client.cert, clientkey=str(tmp_path / "missing.key"))
    with pytest.raises(ssl.SSLError):  # an encrypted key with the wrong password
        socketutil.getSSLcontext(servercert=pki.server.cert, serverkey=pki.server_key_encrypted, keypassword="nope")
    ctx = socketutil.getSSLcontext(servercert=pki.server.cert, serverkey=pki.server_key_encrypted,
                                   keypassword=pki.password)
    assert ctx is not None


def test_daemon_without_server_certificate_fails_at_once() -> None:
    with pytest.raises(errors.PyroError, match="SSL_SERVERCERT"):
        Daemon(host="127.0.0.1", config=make_config("thread", SSL=True))


def test_tls_server_connection_blocking_use(pki: PKI) -> None:
    """recv_message (blocking: handshake, then whole records within the timeout) and large sends."""
    server_sock, client_sock = socket.socketpair()
    server_ctx = socketutil.getSSLcontext(servercert=pki.server.cert, serverkey=pki.server.key,
                                          requireclientcert=False)
    conn = socketutil.TLSServerConnection(
        server_ctx.wrap_socket(server_sock, server_side=True, do_handshake_on_connect=False), 5.0)
    received: list[bytes] = []

    def client() -> None:
        tls = socketutil.getSSLcontext(cacerts=pki.ca.cert, checkhostname=False).wrap_socket(client_sock)
        tls.sendall(protocol.encode(MSG_INVOKE, b"question", MARSHAL_ID, seq=9))
        reader = protocol.MessageReader()
        while (msg := reader.next_message()) is None:
            reader.feed(tls.recv(65536))
        received.append(bytes(msg.data))
        time.sleep(0.5)  # then silence: the server's next receive times out
        tls.close()

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        msg = conn.recv_message()
        assert (msg.type, bytes(msg.data), msg.seq) == (MSG_INVOKE, b"question", 9)
        assert conn.tls_established and conn.getpeercert() is None
        conn.send_parts(*protocol.encode_parts(MSG_RESULT, b"a" * 300_000, MARSHAL_ID, seq=9))
        conn.settimeout(0.2)
        assert conn.gettimeout() == 0.2
        with pytest.raises(errors.TimeoutError):
            conn.recv_message()
        thread.join(10)
        assert received == [b"a" * 300_000]
    finally:
        conn.close()


# ---------------------------------------------------------------- one-way and two-way TLS
def _calls(p: Proxy) -> None:
    assert p.add(1, 2) == 3
    big = "x" * 3_000_000  # many TLS records both ways: exercises partial records and pending bytes
    assert p.echo(big) == big
    assert list(p.count(5)) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="remote"):
        p.fail("remote")


def test_one_way(servertype: str, pki: PKI, where: dict[str, Any]) -> None:
    with serving(servertype, daemon_class=CertDaemon, **where, **server_items(pki)) as served:
        with proxy(served.uri, **client_items(pki)) as p:
            _calls(p)
            assert p._pyroConnection.getpeercert()["subject"] == ((("commonName", "localhost"),),)
        assert served.log[0] == ("handshake", None)  # no client certificate in one-way TLS


def test_two_way(servertype: str, pki: PKI, where: dict[str, Any]) -> None:
    with serving(servertype, daemon_class=CertDaemon, **where, **server_items(pki, two_way=True)) as served:
        with proxy(served.uri, **client_items(pki, cert=True)) as p:
            _calls(p)
        assert served.log[0] == ("handshake", "pyroplug test client")


def test_encrypted_keys_and_ca_directory(servertype: str, pki: PKI) -> None:
    """SSL_SERVERKEYPASSWD/SSL_CLIENTKEYPASSWD and SSL_CACERTS as a hashed directory (Pyro5#28)."""
    items = server_items(pki, two_way=True, SSL_SERVERKEY=pki.server_key_encrypted,
                         SSL_SERVERKEYPASSWD=pki.password, SSL_CACERTS=pki.capath)
    with serving(servertype, daemon_class=CertDaemon, **items) as served:
        with proxy(served.uri, **client_items(pki, cert=True, SSL_CACERTS=pki.capath)) as p:
            assert p.add(2, 3) == 5
        with proxy(served.uri, **client_items(pki, cert=True, SSL_CLIENTKEY=pki.client_key_encrypted,
                                              SSL_CLIENTKEYPASSWD=pki.password)) as p:
            assert p.add(3, 3) == 6
        assert [entry[1] for entry in served.log if entry[0] == "handshake"] == ["pyroplug test client"] * 2


@pytest.mark.skipif(not HAS_IPV6, reason="IPv6 loopback unavailable")
def test_ipv6_host_checked_against_ip_san(servertype: str, pki: PKI) -> None:
    with serving(servertype, host="::1", **server_items(pki)) as served:
        with proxy(served.uri, **client_items(pki)) as p:
            assert p.add(1, 1) == 2


def test_many_concurrent_clients(servertype: str, pki: PKI) -> None:
    with serving(servertype, **server_items(pki)) as served:
        failures: list[BaseException] = []

        def client(n: int) -> None:
            try:
                with proxy(served.uri, **client_items(pki)) as p:
                    for i in range(10):
                        assert p.add(n, i) == n + i
                    assert p.echo("z" * 70_000) == "z" * 70_000
            except BaseException as exc:  # collected and asserted below
                failures.append(exc)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not failures


# ---------------------------------------------------------------- refusals, before any user code
def _refused(served: Served, **items: Any) -> errors.CommunicationError:
    with proxy(served.uri, **items) as p:
        with pytest.raises(errors.CommunicationError) as info:
            p.add(1, 2)
        assert p._pyroConnection is None
    return info.value


def test_missing_client_certificate_refused(servertype: str, pki: PKI, where: dict[str, Any]) -> None:
    with serving(servertype, **where, **server_items(pki, two_way=True)) as served:
        exc = _refused(served, **client_items(pki))
        assert "cannot connect to" in str(exc)
        assert served.log == []
        assert wait_until(lambda: len(served.daemon.disconnects) == 1)


def test_untrusted_client_certificate_refused(servertype: str, pki: PKI, where: dict[str, Any]) -> None:
    with serving(servertype, **where, **server_items(pki, two_way=True)) as served:
        exc = _refused(served, **client_items(pki, SSL_CLIENTCERT=pki.rogue_client.cert,
                                              SSL_CLIENTKEY=pki.rogue_client.key))
        assert "unknown ca" in str(exc).lower() or "receiving" in str(exc) or "sending" in str(exc)
        assert served.log == []


def test_untrusted_server_refused_by_the_client(servertype: str, pki: PKI, where: dict[str, Any]) -> None:
    items = server_items(pki, SSL_SERVERCERT=pki.rogue_server.cert, SSL_SERVERKEY=pki.rogue_server.key)
    with serving(servertype, **where, **items) as served:
        exc = _refused(served, **client_items(pki))
        assert "certificate verify failed" in str(exc)
        assert isinstance(exc.__cause__, ssl.SSLCertVerificationError)
        assert served.log == []


def test_server_name_checked_against_the_uri_host(servertype: str, pki: PKI) -> None:
    items = server_items(pki, SSL_SERVERCERT=pki.wrong_host_server.cert, SSL_SERVERKEY=pki.wrong_host_server.key)
    with serving(servertype, **items) as served:
        exc = _refused(served, **client_items(pki))
        assert "certificate verify failed" in str(exc) and "127.0.0.1" in str(exc)
        assert served.log == []


@pytest.mark.skipif(not HAS_UNIX, reason="no unix sockets")
def test_unix_sockets_check_the_chain_only(servertype: str, pki: PKI, tmp_path: Any) -> None:
    """A unix socket URI has no host name: any certificate of the trusted CA is accepted, others not."""
    items = server_items(pki, SSL_SERVERCERT=pki.wrong_host_server.cert, SSL_SERVERKEY=pki.wrong_host_server.key)
    with serving(servertype, unixsocket=str(tmp_path / "s.sock"), **items) as served:
        with proxy(served.uri, **client_items(pki)) as p:
            assert p.add(1, 1) == 2
        _refused(served, **client_items(pki, SSL_CACERTS=pki.rogue_ca.cert))


def test_plain_client_and_tls_daemon_do_not_mix(servertype: str, pki: PKI) -> None:
    with serving(servertype, **server_items(pki)) as served:
        _refused(served)  # a plain client: its CONNECT is not a TLS record
        assert served.log == []
    with serving(servertype) as served:
        exc = _refused(served, **client_items(pki))  # a TLS client at a plain daemon
        assert "TLS" in str(exc)
        assert served.log == []


# ---------------------------------------------------------------- stalled TLS clients never block a server
def test_stalled_handshakes_do_not_block(servertype: str, pki: PKI) -> None:
    with serving(servertype, **server_items(pki)) as served:
        address = (served.uri.host, served.uri.port)
        stalled = []
        for _ in range(5):  # connected and silent
            stalled.append(socket.create_connection(address))
        for _ in range(5):  # half a ClientHello record header
            s = socket.create_connection(address)
            s.sendall(b"\x16\x03\x01")
            stalled.append(s)
        try:
            start = time.monotonic()
            with proxy(served.uri, timeout=5, **client_items(pki)) as p:
                assert p.add(1, 2) == 3
            assert time.monotonic() - start < 3
        finally:
            for s in stalled:
                s.close()


def test_partial_tls_record_does_not_block(servertype: str, pki: PKI) -> None:
    """A client that completed TLS and the Pyro handshake, then sends only part of a TLS record."""
    with serving(servertype, **server_items(pki)) as served:
        ctx = socketutil.getSSLcontext(cacerts=pki.ca.cert)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        raw = socket.create_connection((served.uri.host, served.uri.port), timeout=10)
        try:
            _bio_handshake(tls, raw, incoming, outgoing)
            tls.write(protocol.encode(protocol.MSG_CONNECT, connect_payload(), MARSHAL_ID,
                                      protocol.FLAGS_META_ON_CONNECT))
            raw.sendall(outgoing.read())
            reply = _bio_receive(tls, raw, incoming, outgoing)
            assert reply.type == MSG_CONNECTOK
            tls.write(protocol.encode(MSG_INVOKE, invoke_payload("recorder", "add", 40, 2), MARSHAL_ID, seq=1))
            record = outgoing.read()
            raw.sendall(record[: len(record) // 2])  # half a record: the server must not wait for the rest
            start = time.monotonic()
            with proxy(served.uri, timeout=5, **client_items(pki)) as p:
                assert p.add(1, 2) == 3
            assert time.monotonic() - start < 3
            raw.sendall(record[len(record) // 2:])  # the rest: the call completes
            reply = _bio_receive(tls, raw, incoming, outgoing)
            assert reply.type == MSG_RESULT and marshal_loads(reply.data) == 42
        finally:
            raw.close()


def _bio_handshake(tls: ssl.SSLObject, raw: socket.socket, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
    while True:
        try:
            tls.do_handshake()
            raw.sendall(outgoing.read())
            return
        except ssl.SSLWantReadError:
            raw.sendall(outgoing.read())
            data = raw.recv(65536)
            assert data, "server closed during the TLS handshake"
            incoming.write(data)


def _bio_receive(tls: ssl.SSLObject, raw: socket.socket, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO) -> protocol.Message:
    reader = protocol.MessageReader()
    while True:
        try:
            reader.feed(tls.read(65536))
        except ssl.SSLWantReadError:
            data = raw.recv(65536)
            assert data, "server closed the connection"
            incoming.write(data)
            continue
        msg = reader.next_message()
        if msg is not None:
            return msg


def test_stalled_handshake_expires_with_commtimeout(servertype: str, pki: PKI) -> None:
    with serving(servertype, COMMTIMEOUT=0.5, **server_items(pki)) as served:
        with RawClient.to(served.uri, timeout=10) as raw:
            start = time.monotonic()
            assert raw.closed_by_peer()
            assert time.monotonic() - start < 8


# ---------------------------------------------------------------- name server over two-way TLS
def test_name_server_over_two_way_tls(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    """locateNS, PYRONAME resolution and the object itself, all over two-way TLS with a CA directory."""
    from pyroplug.core.nsclient import locateNS
    from pyroplug.naming import startNS

    for name, value in {**server_items(pki, two_way=True, SSL_CACERTS=pki.capath),
                        **client_items(pki, cert=True, SSL_CACERTS=pki.capath)}.items():
        monkeypatch.setattr(global_config, name, value)
    uri, ns_daemon, _bc = startNS("127.0.0.1", 0, enableBroadcast=False)
    ns_thread = threading.Thread(target=ns_daemon.requestLoop, daemon=True)
    ns_thread.start()
    try:
        with serving("multiplex", **server_items(pki, two_way=True, SSL_CACERTS=pki.capath)) as served:
            with locateNS("127.0.0.1", uri.port) as ns:
                ns.register("secure.recorder", served.uri)
                assert "secure.recorder" in ns.list()
            with Proxy(f"PYRONAME:secure.recorder@127.0.0.1:{uri.port}") as p:
                assert p.add(3, 4) == 7
            monkeypatch.setattr(global_config, "SSL_CLIENTCERT", "")
            monkeypatch.setattr(global_config, "SSL_CLIENTKEY", "")
            with pytest.raises(errors.NamingError):  # without a client certificate the name server refuses
                locateNS("127.0.0.1", uri.port)
    finally:
        ns_daemon.shutdown()
        ns_thread.join(10)
        ns_daemon.close()
