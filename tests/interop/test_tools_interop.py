"""The tools against stock Pyro4 4.82: the HTTP gateway and Flame, in both directions.

- HTTP gateway: pyroplug's gateway and stock ``python -m Pyro4.utils.httpgateway`` side by side, in
  front of a stock name server and the stock echo server; every request goes to both gateways and the
  replies are compared (stock Pyro4's gateway is the reference for what a client sees). Where the
  pyroplug gateway differs on purpose (status codes of errors, generator results) the test says so.
- Flame: a stock Pyro4 client and a pyroplug client (driver peers) against the stock
  ``python -m Pyro4.utils.flameserver`` and ``python -m pyroplug.tools.flameserver``: all four cells.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyroplug.testing.interop import Driver, Peer
from pyroplug.tools.httpgateway import HttpGateway
from tests.tools.support import serve_wsgi

pytestmark = pytest.mark.interop

FLAVORS = ("pyro4", "pyroplug")
GATEWAY_KEY = "interop-key"
KEY = {"X-Pyro-Gateway-Key": GATEWAY_KEY}
FLAME_ENV = {"PYRO_FLAME_ENABLED": "true", "PYRO_SERIALIZERS_ACCEPTED": "pickle", "PYRO_SERIALIZER": "pickle"}


def _start(argv: list[str], ready: str, env: dict[str, str] | None = None, name: str | None = None) -> tuple[Peer, str]:
    peer = Peer(argv, env=env, ready=None, name=name)
    try:
        line = peer.wait_for(ready, 30)
    except BaseException:
        peer.stop()
        raise
    return peer, line[len(ready):].strip()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(location: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
            method: str | None = None) -> Reply:
    conn = http.client.HTTPConnection(location, timeout=15)
    try:
        conn.request(method or ("POST" if body is not None else "GET"), path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, dict(resp.headers), resp.read())
    finally:
        conn.close()


# ---------------------------------------------------------------------- HTTP gateway
@pytest.fixture(scope="module")
def gateways() -> Iterator[dict[str, str]]:
    """Stock NS + stock echo server, with the stock gateway and pyroplug's gateway both in front of them."""
    peers: list[Peer] = []
    app: HttpGateway | None = None
    try:
        ns, ns_uri = _start([sys.executable, "-m", "Pyro4.naming", "-n", "127.0.0.1", "-p", "0", "-x"], "URI = ",
                            name="Pyro4.naming")
        peers.append(ns)
        ns_port = ns_uri.rpartition(":")[2]
        env = {"PYRO_NS_HOST": "127.0.0.1", "PYRO_NS_PORT": ns_port, "PYRO_BROADCAST_ADDRS": "127.0.0.1"}
        echo, _ = _start([sys.executable, "-m", "Pyro4.test.echoserver", "-H", "127.0.0.1", "-n"], "echo uri: ",
                         env=env, name="Pyro4.test.echoserver")
        peers.append(echo)
        stock, url = _start([sys.executable, "-m", "Pyro4.utils.httpgateway", "-H", "127.0.0.1", "-p", "0",
                             "-e", r"test\.", "-t", "10"], "Pyro HTTP gateway running on ",
                            env={**env, "PYRO_HTTPGATEWAY_KEY": GATEWAY_KEY}, name="Pyro4.utils.httpgateway")
        peers.append(stock)
        app = HttpGateway(r"test\.", gateway_key=GATEWAY_KEY, comm_timeout=10, ns_host="127.0.0.1", ns_port=int(ns_port))
        with serve_wsgi(app) as ours:
            yield {"pyro4": url.split("//", 1)[1].rstrip("/").removesuffix("/pyro"), "pyroplug": ours}
    finally:
        if app is not None:
            app.close()
        for peer in reversed(peers):
            peer.stop()


def both(gateways: dict[str, str], path: str, **kwargs: Any) -> tuple[Reply, Reply]:
    """The same request to the stock gateway and to pyroplug's: (stock reply, pyroplug reply)."""
    return request(gateways["pyro4"], path, **kwargs), request(gateways["pyroplug"], path, **kwargs)


def test_gateway_calls_match_stock(gateways: dict[str, str]) -> None:
    corr = str(uuid.uuid4())
    stock, ours = both(gateways, "/pyro/test.echoserver/echo?message=h%C3%A9llo", headers={**KEY, "X-Pyro-Correlation-Id": corr})
    assert stock.status == ours.status == 200
    assert ours.json() == "h\u00e9llo"
    assert stock.json() == "h\u00c3\u00a9llo"  # stock quirk: cgi.parse decodes the query string as latin-1
    assert stock.headers["X-Pyro-Correlation-Id"] == ours.headers["X-Pyro-Correlation-Id"] == corr
    assert stock.headers["Content-Type"] == ours.headers["Content-Type"] == "application/json; charset=utf-8"
    stock, ours = both(gateways, "/pyro/test.echoserver/echo?message=plain", headers=KEY)
    assert stock.body == ours.body == b'"plain"'
    uuid.UUID(ours.headers["X-Pyro-Correlation-Id"])
    stock, ours = both(gateways, "/pyro/test.echoserver/echo", headers={**KEY, "Content-Type": "application/x-www-form-urlencoded"},
                       body=b"message=posted")
    assert stock.status == ours.status == 200 and stock.body == ours.body == b'"posted"'
    stock, ours = both(gateways, "/pyro/test.echoserver/verbose", headers=KEY)  # an attribute
    assert stock.body == ours.body == b"false"
    stock, ours = both(gateways, "/pyro/test.echoserver/nan", headers=KEY)
    assert stock.body == ours.body == b"NaN"  # the daemon's own JSON, passed through


def test_gateway_meta_matches_stock(gateways: dict[str, str]) -> None:
    stock, ours = both(gateways, "/pyro/test.echoserver/$meta", headers=KEY)
    assert stock.status == ours.status == 200
    assert {k: set(v) for k, v in stock.json().items()} == {k: set(v) for k, v in ours.json().items()}
    assert set(ours.json()["methods"]) >= {"echo", "error", "generator", "oneway_slow", "__dunder__"}
    assert ours.json()["attributes"] == ["verbose"]


def test_gateway_remote_exception_matches_stock(gateways: dict[str, str]) -> None:
    stock, ours = both(gateways, "/pyro/test.echoserver/error", headers=KEY)
    assert stock.status == ours.status == 500
    assert stock.json() == ours.json()  # the stock daemon's JSON exception, passed through unchanged
    error = ours.json()
    assert error["__class__"] == "builtins.ValueError" and error["__exception__"] is True
    assert error["args"] == ["expected error from echoserver error() method"]
    assert "in error" in "".join(error["attributes"]["_pyroTraceback"])


def test_gateway_oneway_matches_stock(gateways: dict[str, str]) -> None:
    for path, headers in (("/pyro/test.echoserver/oneway_slow", KEY),
                          ("/pyro/test.echoserver/slow", {**KEY, "X-Pyro-Options": "oneway"})):
        start = time.monotonic()
        stock, ours = both(gateways, path, headers=headers)
        assert time.monotonic() - start < 4  # neither waited for the 5 second sleep
        assert stock.status == ours.status == 200 and stock.body == ours.body == b""


def test_gateway_refusals_match_stock(gateways: dict[str, str]) -> None:
    stock, ours = both(gateways, "/pyro/test.echoserver/echo?message=x")  # no gateway key
    assert stock.status == ours.status == 403
    assert ours.json()["args"] == [stock.body.decode()] == ["403 Forbidden - incorrect gateway api key"]
    stock, ours = both(gateways, "/pyro/test.echoserver/echo?message=x", headers={"X-Pyro-Gateway-Key": "wrong"})
    assert stock.status == ours.status == 403
    stock, ours = both(gateways, "/pyro/test.echoserver/echo?%24key=" + GATEWAY_KEY + "&message=k")
    assert stock.status == ours.status == 200 and stock.body == ours.body == b'"k"'
    stock, ours = both(gateways, "/pyro/Pyro.NameServer/list", headers=KEY)  # not matched by -e test\.
    assert stock.status == ours.status == 403
    assert ours.json()["args"] == [stock.body.decode()] == ["403 Forbidden - access to the requested object has been denied"]
    stock, ours = both(gateways, "/pyro/test.echoserver/x", headers=KEY, method="PUT")
    assert stock.status == ours.status == 405
    stock, ours = both(gateways, "/elsewhere")
    assert stock.status == ours.status == 404 and stock.body == ours.body
    stock, ours = both(gateways, "/")
    assert stock.status == ours.status == 302 and stock.headers["Location"] == ours.headers["Location"] == "/pyro/"


def test_gateway_unknown_name_differs_only_in_status(gateways: dict[str, str]) -> None:
    stock, ours = both(gateways, "/pyro/test.nope/echo", headers=KEY)
    assert stock.status == 500 and ours.status == 404  # on purpose: stock answers 500 for every failure
    for reply in (stock, ours):
        assert reply.json()["__class__"] == "Pyro4.errors.NamingError"
        assert reply.json()["args"] == ["unknown name: test.nope"]


def test_gateway_generator_result(gateways: dict[str, str]) -> None:
    stock, ours = both(gateways, "/pyro/test.echoserver/generator", headers=KEY)
    assert stock.status == 500  # stock limitation: a streamed result reaches the HTTP client as an error
    assert stock.json()["args"] == ["result of call is an iterator"]
    assert (ours.status, ours.json()) == (200, ["one", "two", "three"])


def test_gateway_index_pages(gateways: dict[str, str]) -> None:
    stock, ours = both(gateways, "/pyro/")
    assert stock.status == ours.status == 200
    for reply in (stock, ours):
        assert reply.headers["Content-Type"].startswith("text/html")
        assert b'href="test.echoserver/$meta"' in reply.body
    assert b"Pyro.NameServer" not in ours.body  # only names matching the expose regex (stock has static examples)


# ---------------------------------------------------------------------- Flame
@pytest.fixture(scope="module")
def flame_servers() -> Iterator[dict[str, tuple[str, int]]]:
    """Both flame servers (enabled, pickle only) on 127.0.0.1: flavor -> (location, pid)."""
    peers: dict[str, Peer] = {}
    found: dict[str, tuple[str, int]] = {}
    try:
        for flavor, module in (("pyro4", "Pyro4.utils.flameserver"), ("pyroplug", "pyroplug.tools.flameserver")):
            peer, uri = _start([sys.executable, "-m", module, "-H", "127.0.0.1", "-p", "0"], "server uri: ",
                               env=FLAME_ENV, name=module)
            peers[flavor] = peer
            found[flavor] = (uri.partition("@")[2], peer.proc.pid)
        yield found
    finally:
        for peer in peers.values():
            peer.stop()


@pytest.fixture(scope="module")
def flame_drivers() -> Iterator[dict[str, Driver]]:
    drivers = {flavor: Driver(flavor, env={"PYRO_SERIALIZER": "pickle"}) for flavor in FLAVORS}
    try:
        yield drivers
    finally:
        for d in drivers.values():
            d.close()


FLAME_SNIPPET = """
import importlib
flame = importlib.import_module("Pyro4.utils.flame" if FLAVOR == "pyro4" else "pyroplug.tools.flame")
f = flame.connect(location)
m = f.module("os")
b = f.builtin("max")
f.execute("import math\\nflame_interop = math.factorial(5)")
f.sendmodule(modname, "def triple(x):\\n    return 3 * x\\n")
f.execute("import " + modname)
f.sendfile(path, b"\\x00interop")
c = f.console()
serpent = proxy("PYRO:Pyro.Flame@" + location, "serpent")
result = {
    "methods": sorted(f._pyroMethods),
    "module_class": type(m).__module__ + "." + type(m).__name__,
    "builtin_class": type(b).__module__ + "." + type(b).__name__,
    "console_class": type(c).__module__ + "." + type(c).__name__,
    "inner_proxy_class": type(m.flameserver).__module__ + "." + type(m.flameserver).__name__,
    "pid": m.getpid(),
    "join": m.path.join("a", "b"),
    "max": b(3, 9, 4),
    "evaluated": f.evaluate("flame_interop"),
    "sent_module": f.evaluate(modname + ".triple(14)"),
    "file": f.getfile(path),
    "getmodule": "def dumps(" in f.getmodule("json"),
    "getmodule_sent": catch(f.getmodule, modname) if server == "pyro4" else f.getmodule(modname),
    "console": c.remoteconsole.push_and_get_output("print(6 * 7)"),
    "serpent_refused": catch(lambda: serpent.evaluate("1")),
}
c.close()
f._pyroRelease()
serpent._pyroRelease()
"""

CELLS = [(c, s) for c in FLAVORS for s in FLAVORS]


@pytest.mark.parametrize(("client", "server"), CELLS, ids=[f"{c}->{s}" for c, s in CELLS])
def test_flame(client: str, server: str, flame_servers: dict[str, tuple[str, int]],
               flame_drivers: dict[str, Driver], tmp_path: Path) -> None:
    location, pid = flame_servers[server]
    path = tmp_path / "flame.bin"
    r = flame_drivers[client].run(FLAME_SNIPPET, location=location, server=server, path=str(path),
                                  modname=f"flame_interop_{client}")
    prefix = "Pyro4.utils.flame" if client == "pyro4" else "pyroplug.tools.flame"
    assert r["methods"] == ["builtin", "console", "evaluate", "execute", "getfile", "getmodule", "invokeBuiltin",
                            "invokeModule", "module", "sendfile", "sendmodule"]
    # each client loads the objects as its own classes, whichever server pickled them
    assert r["module_class"] == f"{prefix}.FlameModule"
    assert r["builtin_class"] == f"{prefix}.FlameBuiltin"
    assert r["console_class"] == f"{prefix}.RemoteInteractiveConsole"
    assert r["inner_proxy_class"] == ("Pyro4.core.Proxy" if client == "pyro4" else "pyroplug.core.proxy.Proxy")
    assert r["pid"] == pid
    assert r["join"] == "a/b"
    assert r["max"] == 9
    assert r["evaluated"] == 120
    assert r["sent_module"] == 42
    assert r["file"] == b"\x00interop" and path.read_bytes() == b"\x00interop"
    assert r["getmodule"] is True
    if server == "pyro4":  # stock limitation: inspect.getsource cannot find a module made by sendmodule
        assert r["getmodule_sent"]["__exception__"].rpartition(".")[2] in ("OSError", "TypeError")
    else:
        assert r["getmodule_sent"] == "def triple(x):\n    return 3 * x\n"
    assert tuple(r["console"]) == ("42\n", False)
    # a serializer other than pickle is refused by either server (at connect time)
    assert r["serpent_refused"]["__exception__"].rpartition(".")[2] in ("CommunicationError", "SerializeError", "ProtocolError")


@pytest.fixture(scope="module")
def keyed_flame_servers() -> Iterator[dict[str, str]]:
    """Both flame servers with an HMAC key (PYRO_HMAC_KEY): flavor -> location."""
    peers: list[Peer] = []
    found: dict[str, str] = {}
    try:
        for flavor, module in (("pyro4", "Pyro4.utils.flameserver"), ("pyroplug", "pyroplug.tools.flameserver")):
            peer, uri = _start([sys.executable, "-m", module, "-H", "127.0.0.1", "-p", "0"], "server uri: ",
                               env={**FLAME_ENV, "PYRO_HMAC_KEY": "flame-key"}, name=module)
            peers.append(peer)
            found[flavor] = uri.partition("@")[2]
        yield found
    finally:
        for peer in peers:
            peer.stop()


KEYED_SNIPPET = """
import importlib
flame = importlib.import_module("Pyro4.utils.flame" if FLAVOR == "pyro4" else "pyroplug.tools.flame")
f = flame.connect(location, hmac_key=b"flame-key")
result = {
    "evaluated": f.evaluate("6 * 7"),
    "module_call": catch(lambda: f.module("os").getpid()) if FLAVOR == "pyro4" else f.module("os").getpid() > 0,
    "without_key": catch(flame.connect, location),
}
f._pyroRelease()
"""


@pytest.mark.parametrize(("client", "server"), CELLS, ids=[f"{c}->{s}" for c, s in CELLS])
def test_flame_with_hmac_key(client: str, server: str, keyed_flame_servers: dict[str, str],
                             flame_drivers: dict[str, Driver]) -> None:
    r = flame_drivers[client].run(KEYED_SNIPPET, location=keyed_flame_servers[server])
    assert r["evaluated"] == 42
    assert r["without_key"]["__exception__"].rpartition(".")[2] == "CommunicationError"
    if client == "pyro4":
        # stock limitation (either server): the module proxy made on the server has no HMAC key, and the
        # stock client does not give it one, so calling a module function fails
        assert r["module_call"]["__exception__"] == "Pyro4.errors.CommunicationError"
        assert "hmac" in r["module_call"]["str"]
    else:
        assert r["module_call"] is True  # pyroplug's connect() proxy hands its key to the received objects
