"""NameServerDaemon, startNS and startNSloop: storage handling, self-registration, lifecycle."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pyroplug import errors
from pyroplug.core.config import config
from pyroplug.core.constants import NAMESERVER_NAME
from pyroplug.core.proxy import Proxy
from pyroplug.naming import NameServerDaemon, startNS, startNSloop
from pyroplug.naming.server import NAMESERVER_METADATA, broadcast_refusal
from pyroplug.naming.storages.memory import MemoryStorage
from pyroplug.naming.storages.sql import SqlStorage
from tests.conftest import HAS_IPV6
from tests.naming.conftest import free_port


def test_daemon_registers_itself_with_pyro4_metadata() -> None:
    with NameServerDaemon("127.0.0.1", 0) as d:
        assert d.nameserver is not None
        assert d.objectsById[NAMESERVER_NAME] is d.nameserver
        uri, meta = d.nameserver.lookup(NAMESERVER_NAME, return_metadata=True)
        assert uri == d.uri and uri.port == d.sock.getsockname()[1]
        assert set(meta) == NAMESERVER_METADATA and "class:Pyro4.naming.NameServer" in meta
        assert d.cleaner_thread is None
    assert d.nameserver is None
    with pytest.raises(errors.PyroError, match="cannot reuse"):
        with d:
            pass


def test_default_port_is_ns_port() -> None:
    with NameServerDaemon("127.0.0.1") as d:
        assert d.uri.port == config.NS_PORT


def test_sql_storage_is_closed_with_the_daemon(tmp_path: Path) -> None:
    d = NameServerDaemon("127.0.0.1", 0, storage=f"sql:{tmp_path / 'ns.sqlite'}")
    assert d.nameserver is not None
    storage = d.nameserver.storage
    assert isinstance(storage, SqlStorage)
    d.close()
    with pytest.raises(errors.NamingError, match="closed"):
        len(storage)
    d.close()  # twice is fine


def test_storage_closed_when_the_port_is_taken(tmp_path: Path) -> None:
    store = MemoryStorage()
    store["x"] = ("PYRO:x@h:1", None)
    with NameServerDaemon("127.0.0.1", 0) as running:
        cfg = config.copy()
        cfg.SOCK_REUSE = False
        with pytest.raises(errors.CommunicationError):
            NameServerDaemon("127.0.0.1", running.uri.port, storage=store, config=cfg)
    assert len(store) == 0  # closed (the memory storage forgets everything)


def test_dbm_storage_registers_self_without_metadata(tmp_path: Path) -> None:
    with NameServerDaemon("127.0.0.1", 0, storage=f"dbm:{tmp_path / 'names'}") as d:
        assert d.nameserver is not None
        assert d.nameserver.lookup(NAMESERVER_NAME, return_metadata=True) == (d.uri, [])


def test_invalid_storage_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid storage type 'nope'"):
        NameServerDaemon("127.0.0.1", 0, storage="nope")


def test_start_ns_returns_uri_daemon_and_responder() -> None:
    uri, daemon, bc = startNS("127.0.0.1", 0, hmac="key")
    try:
        assert bc is None and daemon._pyroHmacKey == b"key"
        assert uri == daemon.uriFor(NAMESERVER_NAME)
        assert broadcast_refusal(daemon) == "Not starting broadcast server for localhost."
    finally:
        daemon.close()


def test_start_ns_nat() -> None:
    uri, daemon, _bc = startNS("127.0.0.1", 0, nathost="nat.example.org", natport=4444)
    try:
        assert str(uri) == "PYRO:Pyro.NameServer@nat.example.org:4444"
        # the name server registers its NAT uri, as Pyro4 does
        assert daemon.nameserver is not None
        assert str(daemon.nameserver.lookup(NAMESERVER_NAME)) == str(uri)
    finally:
        daemon.close()


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback")
def test_no_responder_for_ipv6() -> None:
    uri, daemon, bc = startNS("::1", 0)
    try:
        assert bc is None and uri.host == "::1"
        assert broadcast_refusal(daemon) == "Not starting broadcast server for IPv6."
    finally:
        daemon.close()


def test_start_ns_loop_reports_and_stops(tmp_path: Path) -> None:
    lines: list[str] = []
    started = threading.Event()
    holder: dict[str, NameServerDaemon] = {}

    def ready(uri: object, daemon: NameServerDaemon, bc: object) -> None:
        holder["daemon"] = daemon
        started.set()

    port = free_port()
    t = threading.Thread(target=startNSloop, kwargs={
        "host": "127.0.0.1", "port": port, "storage": f"sql:{tmp_path / 'loop.sqlite'}",
        "report": lines.append, "ready": ready})
    t.start()
    assert started.wait(10)
    with Proxy(f"PYRO:{NAMESERVER_NAME}@127.0.0.1:{port}") as ns:
        assert ns.count() == 1
    holder["daemon"].shutdown()
    t.join(10)
    assert not t.is_alive()
    assert lines[0] == "Not starting broadcast server for localhost."
    assert f"URI = PYRO:Pyro.NameServer@127.0.0.1:{port}" in lines
    assert lines[-1] == "NS shut down."


def test_server_type_defaults_to_multiplex() -> None:
    cfg = config.copy()
    cfg.SERVERTYPE = "thread"
    with NameServerDaemon("127.0.0.1", 0, config=cfg) as d:
        assert d.config.SERVERTYPE == "multiplex" and type(d.transportServer).__name__ == "MultiplexServer"
    with NameServerDaemon("127.0.0.1", 0, servertype="thread") as d:
        assert d.config.SERVERTYPE == "thread"
    with pytest.raises(errors.PluginError, match="unknown server type 'bogus'"):
        NameServerDaemon("127.0.0.1", 0, servertype="bogus")
