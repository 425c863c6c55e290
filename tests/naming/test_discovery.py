"""Discovery and resolution: the UDP responder, locateNS, resolve, PYRONAME/PYROMETA proxies (loopback only)."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyroplug import errors
from pyroplug.core import nsclient
from pyroplug.core.config import config
from pyroplug.core.constants import NAMESERVER_NAME
from pyroplug.core.daemon import Daemon
from pyroplug.core.nsclient import _debian_loopback_alias as real_debian_alias
from pyroplug.core.nsclient import broadcast_locate, locateNS, resolve
from pyroplug.core.proxy import Proxy
from pyroplug.core.uri import URI
from pyroplug.naming import BroadcastServer, startNS
from pyroplug.testing.services import Calculator
from tests.naming.conftest import RunningNS, free_port, run_ns


def _ask(port: int, payload: bytes = b"GET_NSURI", timeout: float = 2.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        try:
            return s.recvfrom(200)[0]
        except TimeoutError:
            return None


@pytest.fixture
def responder(ns_server: RunningNS) -> Iterator[BroadcastServer]:
    bc = BroadcastServer(ns_server.uri, bchost="127.0.0.1", bcport=config.NS_BCPORT)
    bc.runInThread()
    yield bc
    bc.close()


# ---------------------------------------------------------------------- the responder
def test_responder_answers_with_the_uri(responder: BroadcastServer, ns_server: RunningNS) -> None:
    assert responder.getPort() == config.NS_BCPORT
    assert responder.locationStr == f"127.0.0.1:{config.NS_BCPORT}"
    assert _ask(config.NS_BCPORT) == str(ns_server.uri).encode("iso-8859-1")


def test_responder_survives_malformed_packets(responder: BroadcastServer, ns_server: RunningNS) -> None:
    for junk in (b"", b"GET", b"get_nsuri", b"\x00\xff" * 40, b"X" * 5000, b"GET_NSURI" * 3, "GET_NSURÏ".encode()):
        assert _ask(config.NS_BCPORT, junk, timeout=0.2) is None
    assert _ask(config.NS_BCPORT, b"GET_NSURI\n") == str(ns_server.uri).encode()
    assert _ask(config.NS_BCPORT) == str(ns_server.uri).encode()
    assert responder._thread is not None and responder._thread.is_alive()


def test_responder_substitutes_the_interface_facing_the_requester() -> None:
    with BroadcastServer("PYRO:Pyro.NameServer@0.0.0.0:9090", bchost="127.0.0.1", bcport=0) as bc:
        bc.runInThread()
        assert _ask(bc.getPort()) == b"PYRO:Pyro.NameServer@127.0.0.1:9090"
        assert bc.reply_for("127.0.0.1") == b"PYRO:Pyro.NameServer@127.0.0.1:9090"
        assert bc.reply_for("not an address") == b"PYRO:Pyro.NameServer@0.0.0.0:9090"


def test_responder_in_a_select_loop_and_reply_errors_logged() -> None:
    """processRequest()/fileno() for foreign loops; a reply that cannot be encoded is skipped, not fatal."""
    with BroadcastServer("PYRO:obj@./u:/tmp/ünicode-€", bchost="127.0.0.1", bcport=0) as bc:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(0.3)
            client.sendto(b"GET_NSURI", ("127.0.0.1", bc.getPort()))
            assert select.select([bc], [], [], 2)[0] == [bc]
            bc.processRequest()  # '€' is not ISO-8859-1: logged and ignored
            with pytest.raises(TimeoutError):
                client.recvfrom(100)
        bc.nsUri = URI("PYRO:obj@localhost:1")
        assert _ask(bc.getPort(), timeout=0.2) is None  # nobody called processRequest
        bc.processRequest()
    assert bc.running is False


def test_responder_adapter_for_daemon_loops() -> None:
    with BroadcastServer("PYRO:obj@localhost:1", bchost="127.0.0.1", bcport=0) as bc:
        assert bc.transportServer.sockets == [bc]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(2)
            client.sendto(b"GET_NSURI", ("127.0.0.1", bc.getPort()))
            bc.transportServer.events([bc])
            assert client.recvfrom(100)[0] == b"PYRO:obj@localhost:1"


def test_no_responder_on_loopback_or_unix(tmp_path: Path) -> None:
    uri, daemon, bc = startNS("127.0.0.1", 0, enableBroadcast=True)
    try:
        assert bc is None and uri.host == "127.0.0.1"
    finally:
        daemon.close()
    uri, daemon, bc = startNS(unixsocket=str(tmp_path / "ns.sock"), enableBroadcast=True)
    try:
        assert bc is None and uri.sockname == str(tmp_path / "ns.sock")
    finally:
        daemon.close()


# ---------------------------------------------------------------------- locating
def test_broadcast_locate_finds_the_responder(responder: BroadcastServer, ns_server: RunningNS) -> None:
    assert broadcast_locate() == str(ns_server.uri)


def test_broadcast_locate_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    start = time.monotonic()
    assert broadcast_locate(free_port(socket.SOCK_DGRAM), timeout=0.2, attempts=2) is None
    assert time.monotonic() - start < 2


def test_broadcast_locate_skips_invalid_replies(ns_server: RunningNS) -> None:
    """A bogus responder answering first does not win; the real answer is used."""
    port = config.NS_BCPORT
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fake:
        fake.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        fake.bind(("127.0.0.1", port))

        def answer() -> None:
            fake.settimeout(5)
            _data, addr = fake.recvfrom(100)
            fake.sendto(b"garbage, not a uri", addr)
            fake.sendto(str(ns_server.uri).encode(), addr)

        t = threading.Thread(target=answer)
        t.start()
        assert broadcast_locate(port) == str(ns_server.uri)
        t.join(5)


def test_locate_direct_on_loopback_ns_host(ns_server: RunningNS) -> None:
    with locateNS() as ns:
        assert ns._pyroUri == ns_server.uri and ns._pyroConnection is not None
    with locateNS("127.0.0.1", ns_server.uri.port) as ns:
        assert ns.ping() is None


def test_locate_by_broadcast_when_direct_fails(responder: BroadcastServer, ns_server: RunningNS,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "NS_PORT", free_port())  # nothing at NS_HOST:NS_PORT
    with locateNS() as ns:
        assert ns._pyroUri == ns_server.uri
        assert ns._pyroConnection is None  # a broadcast result is returned unbound, as in Pyro4
        assert ns.count() == 1
    with pytest.raises(errors.NamingError, match="Failed to locate the nameserver"):
        locateNS(broadcast=False)


def test_locate_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "BROADCAST_ADDRS", "127.0.0.1")
    with pytest.raises(errors.NamingError, match="Failed to locate the nameserver") as info:
        locateNS()
    assert isinstance(info.value.__cause__, errors.CommunicationError)
    with pytest.raises(errors.NamingError, match="Failed to locate"):
        locateNS("127.0.0.1", free_port())


def test_locate_tries_debian_loopback_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    """NS_HOST=localhost finds a name server bound to 127.0.1.1 when that address is known."""
    try:
        running = run_ns(nsclient.DEBIAN_HOST_ADDRESS, config.NS_PORT)
    except errors.CommunicationError:
        pytest.skip("127.0.1.1 cannot be bound here")
    try:
        monkeypatch.setattr(config, "NS_HOST", "localhost")
        monkeypatch.setattr(nsclient, "_debian_loopback_alias", lambda: True)
        with locateNS(broadcast=False) as ns:
            assert ns._pyroUri.host == "127.0.1.1"
        monkeypatch.setattr(nsclient, "_debian_loopback_alias", lambda: False)
        with pytest.raises(errors.NamingError):
            locateNS(broadcast=False)
    finally:
        running.stop()


def test_debian_alias_read_from_hosts_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = tmp_path / "hosts"
    monkeypatch.setattr(nsclient, "_hosts_file", lambda: str(hosts))
    check = real_debian_alias.__wrapped__  # type: ignore[attr-defined]
    hosts.write_text("127.0.0.1 localhost\n# 127.0.1.1 commented\n")
    assert check() is False
    hosts.write_text("127.0.0.1 localhost\n127.0.1.1\tmyhost.example myhost  # debian\n")
    assert check() is True
    hosts.unlink()
    assert check() is False


def test_locate_and_resolve_over_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "ns.sock")
    running = run_ns(None, unixsocket=path)
    try:
        with locateNS(f"./u:{path}") as ns:
            ns.register("unix.thing", "PYRO:thing@./u:/tmp/thing.sock")
        assert str(resolve(f"PYRONAME:unix.thing@./u:{path}")) == "PYRO:thing@./u:/tmp/thing.sock"
    finally:
        running.stop()


# ---------------------------------------------------------------------- resolving and proxies
@pytest.fixture
def service(ns_server: RunningNS) -> Iterator[tuple[Daemon, Calculator, URI]]:
    daemon = Daemon(host="127.0.0.1")
    calc = Calculator()
    uri = daemon.register(calc, "calc")
    t = threading.Thread(target=daemon.requestLoop, daemon=True)
    t.start()
    with Proxy(ns_server.uri) as ns:
        ns.register("example.calc", uri, metadata={"calculator", "math"})
    yield daemon, calc, uri
    daemon.shutdown()
    t.join(10)


def test_resolve(ns_server: RunningNS, service: tuple[Daemon, Calculator, URI]) -> None:
    _d, _c, uri = service
    where = f"127.0.0.1:{ns_server.uri.port}"
    assert resolve(uri) is uri
    assert resolve(f"PYRONAME:example.calc@{where}") == uri
    assert resolve("PYRONAME:example.calc") == uri  # NS_HOST/NS_PORT from the config
    assert resolve(f"PYROMETA:math,calculator@{where}") == uri
    with pytest.raises(errors.NamingError, match="unknown name"):
        resolve(f"PYRONAME:nope@{where}")
    with pytest.raises(errors.NamingError, match="no registrations available"):
        resolve(f"PYROMETA:math,physics@{where}")
    with pytest.raises(TypeError):
        resolve(42)  # type: ignore[arg-type]


def test_pyroname_proxy_binds_lazily_and_keeps_its_uri(ns_server: RunningNS, service: tuple[Daemon, Calculator, URI]) -> None:
    name_uri = URI(f"PYRONAME:example.calc@127.0.0.1:{ns_server.uri.port}")
    with Proxy(name_uri) as p:
        assert p._pyroConnection is None
        assert p.add(1, 2) == 3
        assert p._pyroUri == name_uri  # a lazy connect keeps the PYRONAME uri
    with Proxy(name_uri) as p:
        assert p._pyroBind() is True
        assert p._pyroUri == service[2]  # _pyroBind replaces it by the resolved PYRO uri


def test_pyrometa_proxy(ns_server: RunningNS, service: tuple[Daemon, Calculator, URI]) -> None:
    with Proxy(f"PYROMETA:calculator@127.0.0.1:{ns_server.uri.port}") as p:
        assert p.add(2, 2) == 4
    with Proxy(f"PYROMETA:unknown.tag@127.0.0.1:{ns_server.uri.port}") as p:
        with pytest.raises(errors.NamingError):
            p.add(1, 1)


def test_pyroname_reconnect_follows_a_moved_object(ns_server: RunningNS, service: tuple[Daemon, Calculator, URI]) -> None:
    """The service restarts elsewhere and re-registers: _pyroReconnect resolves the name again."""
    daemon, _calc, _uri = service
    name_uri = URI(f"PYRONAME:example.calc@127.0.0.1:{ns_server.uri.port}")
    with Proxy(name_uri) as p:
        assert p.add(1, 1) == 2
        daemon.shutdown()
        time.sleep(0.3)
        with Daemon(host="127.0.0.1") as moved:
            new_uri = moved.register(Calculator(), "calc")
            t = threading.Thread(target=moved.requestLoop, daemon=True)
            t.start()
            with Proxy(ns_server.uri) as ns:
                ns.register("example.calc", new_uri)
            with pytest.raises(errors.CommunicationError):
                p.add(1, 1)  # the old connection is gone
            p._pyroReconnect(tries=2)
            assert p.add(5, 5) == 10
            assert p._pyroUri == name_uri and p._pyroConnection is not None
            assert p._pyroConnection.peer[1] == new_uri.port  # type: ignore[attr-defined]
            moved.shutdown()
            t.join(10)


def test_pyroname_reconnect_waits_for_the_name(ns_server: RunningNS, service: tuple[Daemon, Calculator, URI]) -> None:
    """A name that is briefly unknown counts as a failed try instead of aborting the reconnect loop."""
    _daemon, _calc, uri = service
    with Proxy(ns_server.uri) as ns:
        ns.remove("example.calc")
    name_uri = URI(f"PYRONAME:example.calc@127.0.0.1:{ns_server.uri.port}")

    def register_later() -> None:
        time.sleep(0.5)
        with Proxy(ns_server.uri) as ns:
            ns.register("example.calc", uri)

    t = threading.Thread(target=register_later)
    t.start()
    with Proxy(name_uri) as p:
        p._pyroReconnect(tries=3)
        assert p.add(3, 4) == 7
    t.join(5)
    with Proxy(f"PYRONAME:never.there@127.0.0.1:{ns_server.uri.port}") as p:
        with pytest.raises(errors.ConnectionClosedError, match="failed to reconnect"):
            p._pyroReconnect(tries=1)


def test_hmac_protected_ns_and_resolution(service: tuple[Daemon, Calculator, URI]) -> None:
    """The HMAC key is used for PYRONAME resolution too (Pyro4#70)."""
    key = b"secret key"
    uri, daemon, _bc = startNS("127.0.0.1", 0, enableBroadcast=False, hmac=key)
    t = threading.Thread(target=daemon.requestLoop, daemon=True)
    t.start()
    try:
        where = f"127.0.0.1:{uri.port}"
        with pytest.raises(errors.NamingError):
            locateNS("127.0.0.1", uri.port)
        with locateNS("127.0.0.1", uri.port, hmac_key=key) as ns:
            ns.register("secret.calc", service[2])
        assert resolve(f"PYRONAME:secret.calc@{where}", hmac_key=key) == service[2]
        with pytest.raises(errors.NamingError):
            resolve(f"PYRONAME:secret.calc@{where}")
    finally:
        daemon.shutdown()
        t.join(10)


def test_ns_daemon_registration_and_uri(ns_server: RunningNS) -> None:
    d = ns_server.daemon
    assert d.uri == ns_server.uri == d.uriFor(NAMESERVER_NAME)
    with Proxy(ns_server.uri) as ns:
        uri, meta = ns.lookup(NAMESERVER_NAME, return_metadata=True)
        assert uri == ns_server.uri
        assert "class:Pyro4.naming.NameServer" in meta


def test_name_server_over_a_plugin_transport() -> None:
    """The NS on the test-only memory transport (a third-party style plugin): locate, PYRONAME, autoclean probe."""
    from pyroplug.naming import NameServerDaemon

    with NameServerDaemon(transport="mem", address="nameserver") as nsd:
        t = threading.Thread(target=nsd.requestLoop, daemon=True)
        t.start()
        try:
            assert str(nsd.uri) == "PYRO:Pyro.NameServer@./mem:nameserver"
            with Daemon(transport="mem", address="service") as service:
                uri = service.register(Calculator(), "calc")
                st = threading.Thread(target=service.requestLoop, daemon=True)
                st.start()
                with locateNS("./mem:nameserver") as ns:
                    ns.register("mem.calc", uri)
                with Proxy("PYRONAME:mem.calc@./mem:nameserver") as p:
                    assert p.add(2, 3) == 5
                assert resolve("PYRONAME:mem.calc@./mem:nameserver") == uri
                from pyroplug.naming import AutoCleaner

                assert nsd.nameserver is not None
                cleaner = AutoCleaner(nsd.nameserver, 3)
                assert cleaner.probe(str(uri)) is True
                service.shutdown()
                st.join(10)
            assert cleaner.probe(str(uri)) is False
        finally:
            nsd.shutdown()
            t.join(10)
