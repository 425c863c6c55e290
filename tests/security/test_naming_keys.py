"""The HMAC key beyond a single proxy: name-server location (direct and by broadcast), PYRONAME proxies
(Pyro4#70: their resolution must use the proxy's key) and the echo server's PYRO_HMAC_KEY / -k."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pyroplug.core import errors, nsclient
from pyroplug.core.config import config as global_config
from pyroplug.core.nsclient import locateNS
from pyroplug.core.proxy import Proxy
from pyroplug.naming import BroadcastServer, startNS
from pyroplug.testing.certs import PKI
from pyroplug.testing.interop import Peer, run_peer
from pyroplug.tools import echoserver
from tests.security.support import KEY, KEY_BYTES, proxy, serving


def _free(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def keyed_ns(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A name server with the HMAC key, answering UDP locate requests on loopback only."""
    monkeypatch.setattr(global_config, "BROADCAST_ADDRS", "127.0.0.1")
    monkeypatch.setattr(global_config, "NS_BCPORT", _free(socket.SOCK_DGRAM))
    monkeypatch.setattr(global_config, "NS_HOST", "127.0.0.1")
    monkeypatch.setattr(global_config, "NS_PORT", _free(socket.SOCK_STREAM))  # nothing listens there
    monkeypatch.setattr(nsclient, "_debian_loopback_alias", lambda: False)
    uri, daemon, _bc = startNS("127.0.0.1", 0, enableBroadcast=False, hmac=KEY)
    bc = BroadcastServer(uri, bchost="127.0.0.1", bcport=global_config.NS_BCPORT)
    bc.runInThread()
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        yield uri
    finally:
        bc.close()
        daemon.shutdown()
        thread.join(10)
        daemon.close()


def test_locate_directly_and_by_broadcast(keyed_ns: Any) -> None:
    with locateNS("127.0.0.1", keyed_ns.port, hmac_key=KEY) as ns:
        assert ns._pyroHmacKey == KEY_BYTES
        ns.ping()
    with pytest.raises(errors.NamingError):
        locateNS("127.0.0.1", keyed_ns.port)  # no key: the handshake is refused
    with pytest.raises(errors.NamingError):
        locateNS("127.0.0.1", keyed_ns.port, hmac_key="wrong")
    with locateNS(hmac_key=KEY) as ns:  # NS_HOST has nothing: found by broadcast, returned unbound with the key
        assert ns._pyroUri == keyed_ns and ns._pyroHmacKey == KEY_BYTES
        ns.ping()


def test_pyroname_resolution_uses_the_proxy_key(servertype: str, keyed_ns: Any) -> None:
    """Pyro4#70: a PYRONAME proxy with _pyroHmacKey resolves through a keyed name server."""
    with serving(servertype, hmac=KEY) as served:
        with locateNS("127.0.0.1", keyed_ns.port, hmac_key=KEY) as ns:
            ns.register("keyed.recorder", served.uri)
        name_uri = f"PYRONAME:keyed.recorder@127.0.0.1:{keyed_ns.port}"
        with proxy(name_uri, hmac=KEY) as p:
            assert p.add(1, 2) == 3
            assert p._pyroUri.protocol == "PYRONAME"  # kept: re-resolved on reconnect
            p._pyroReconnect(tries=1)
            assert p.add(2, 2) == 4
        with proxy(name_uri, hmac=KEY) as p:
            assert p._pyroBind() and p._pyroUri == served.uri
        with proxy(name_uri) as p:
            with pytest.raises(errors.NamingError):
                p.add(1, 2)


def test_echoserver_takes_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYRO_HMAC_KEY", KEY)
    daemon, _echo, uri = echoserver.main(["-H", "127.0.0.1", "-q"], returnWithoutLooping=True)
    try:
        assert daemon._pyroHmacKey == KEY_BYTES
        thread = threading.Thread(target=daemon.requestLoop, daemon=True)
        thread.start()
        with Proxy(uri) as p:
            p._pyroHmacKey = KEY
            assert p.echo("hi") == "hi"
        with Proxy(uri) as p, pytest.raises(errors.CommunicationError, match="not symmetric"):
            p.echo("hi")
    finally:
        daemon.shutdown()
        daemon.close()


def test_echoserver_deprecated_key_option(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PYRO_HMAC_KEY", raising=False)
    daemon, _echo, _uri = echoserver.main(["-H", "127.0.0.1", "-q", "-k", KEY], returnWithoutLooping=True)
    daemon.close()
    assert daemon._pyroHmacKey == KEY_BYTES
    assert "deprecated" in capsys.readouterr().err
    monkeypatch.setenv("PYRO_HMAC_KEY", "other")
    with pytest.raises(SystemExit) as info:  # both at once: a usage error
        echoserver.main(["-H", "127.0.0.1", "-q", "-k", KEY], returnWithoutLooping=True)
    assert info.value.code == 2


def test_name_server_tools_over_tls_with_a_key(pki: PKI) -> None:
    """pyroplug-ns and pyroplug-nsc take TLS from PYRO_SSL* and the key from PYRO_HMAC_KEY, as Pyro4's do."""
    server_env = {"PYRO_SSL": "true", "PYRO_SSL_SERVERCERT": pki.server.cert, "PYRO_SSL_SERVERKEY": pki.server.key,
                  "PYRO_SSL_CACERTS": pki.ca.cert, "PYRO_SSL_REQUIRECLIENTCERT": "true", "PYRO_HMAC_KEY": KEY}
    client_env = {"PYRO_SSL": "true", "PYRO_SSL_CACERTS": pki.ca.cert, "PYRO_SSL_CLIENTCERT": pki.client.cert,
                  "PYRO_SSL_CLIENTKEY": pki.client.key, "PYRO_HMAC_KEY": KEY}
    with Peer([sys.executable, "-m", "pyroplug.naming", "-n", "127.0.0.1", "-p", "0", "-x"], env=server_env,
              ready="URI = ", name="pyroplug-ns") as ns:
        location = next(line for line in ns.output if line.startswith("NS running on ")).split()[3]
        host, _, port = location.rpartition(":")
        nsc = [sys.executable, "-m", "pyroplug.naming.nsc", "-n", host, "-p", port]
        ok = run_peer([*nsc, "register", "tls.thing", "PYRO:thing@127.0.0.1:1"], env=client_env)
        assert ok.returncode == 0, ok.stderr
        looked_up = run_peer([*nsc, "lookup", "tls.thing"], env=client_env)
        assert looked_up.returncode == 0 and "PYRO:thing@127.0.0.1:1" in looked_up.stdout
        for missing in ("PYRO_HMAC_KEY", "PYRO_SSL_CLIENTCERT", "PYRO_SSL"):
            env = {k: v for k, v in client_env.items() if k != missing}
            refused = run_peer([*nsc, "ping"], env=env)
            assert refused.returncode == 1, (missing, refused.stdout, refused.stderr)
