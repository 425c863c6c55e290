"""Name servers across the boundary: stock Pyro4 clients and tools on a pyroplug name server, and pyroplug
daemons and proxies on a stock Pyro4 name server.

Peers: a name server of each flavor with a UDP broadcast responder on 127.0.0.1 (``peers/nameserver.py``),
a daemon of each flavor registered in both name servers, and client drivers of each flavor whose
broadcasts go to 127.0.0.1 only (``PYRO_BROADCAST_ADDRS``) on a non-default port. The name-server CLIs
(``python -m pyroplug.naming``, ``python -m Pyro4.naming``, ``python -m Pyro4.nsc``) run as programs.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from pyroplug.testing.interop import Driver, Peer, free_tcp_port, free_udp_port, peers_dir, run_peer
from tests.interop.support import FLAVORS, short, start_daemon_peer

try:  # the name server is another engineer's module: skip (only) when it is not importable
    import pyroplug.naming  # noqa: F401
except ImportError:  # pragma: no cover - depends on the checkout
    pytest.skip("pyroplug name server not available yet", allow_module_level=True)

pytestmark = pytest.mark.interop

NS_CELLS = (("pyro4", "pyroplug"), ("pyroplug", "pyro4"), ("pyroplug", "pyroplug"), ("pyro4", "pyro4"))


@pytest.fixture(scope="module")
def dead_port() -> int:
    """NS_PORT for the drivers: nothing listens there, so locateNS() falls back to broadcasting."""
    return free_tcp_port()


@pytest.fixture(scope="module")
def name_servers() -> Iterator[dict[str, Peer]]:
    peers: dict[str, Peer] = {}
    try:
        for flavor in FLAVORS:
            argv = [sys.executable, str(peers_dir() / "nameserver.py"), "--flavor", flavor, "--host", "127.0.0.1",
                    "--bcport", str(free_udp_port())]
            peers[flavor] = Peer(argv, name=f"ns[{flavor}]")
        yield peers
    finally:
        for p in peers.values():
            p.stop()


@pytest.fixture(scope="module")
def registered_daemons(tmp_path_factory: pytest.TempPathFactory, name_servers: dict[str, Peer]) -> Iterator[dict[str, Peer]]:
    """A daemon of each flavor, its service registered as ``interop.<flavor>`` in both name servers."""
    tmp = tmp_path_factory.mktemp("ns-daemons")
    locations = [p.values["ns"].partition("@")[2] for p in name_servers.values()]
    extra = [arg for loc in locations for arg in ("--ns", loc)]
    peers: dict[str, Peer] = {}
    try:
        for flavor in FLAVORS:
            peers[flavor] = start_daemon_peer(flavor, tmp, extra=extra)
        yield peers
    finally:
        for p in peers.values():
            p.stop()


@pytest.fixture(scope="module")
def ns_drivers(dead_port: int) -> Iterator[dict[str, Driver]]:
    env = {"PYRO_NS_HOST": "127.0.0.1", "PYRO_NS_PORT": str(dead_port), "PYRO_BROADCAST_ADDRS": "127.0.0.1"}
    drivers = {flavor: Driver(flavor, env=env) for flavor in FLAVORS}
    try:
        yield drivers
    finally:
        for d in drivers.values():
            d.close()


@dataclass
class NsCell:
    """One client flavor using one name-server flavor."""

    client: str
    ns: str
    driver: Driver
    ns_uri: str
    bc_port: int
    services: dict[str, str]

    @property
    def ns_port(self) -> int:
        return int(self.ns_uri.rpartition(":")[2])

    def run(self, code: str, **variables: Any) -> Any:
        return self.driver.run(code, host="127.0.0.1", port=self.ns_port, ns_uri=self.ns_uri, bcport=self.bc_port,
                               **variables)


@pytest.fixture(params=NS_CELLS, ids=[f"{c}->{n}-ns" for c, n in NS_CELLS])
def ns_cell(request: pytest.FixtureRequest, name_servers: dict[str, Peer], registered_daemons: dict[str, Peer],
            ns_drivers: dict[str, Driver]) -> NsCell:
    client, ns = request.param
    peer = name_servers[ns]
    return NsCell(client, ns, ns_drivers[client], peer.values["ns"], int(peer.values["bc"].rpartition(":")[2]),
                  {flavor: d.values["plain"] for flavor, d in registered_daemons.items()})


def test_locate_directly_lookup_and_pyroname(ns_cell: NsCell) -> None:
    r = ns_cell.run(
        """
ns = Pyro4.locateNS(host, port)
r = {"uri": str(ns._pyroUri), "ping": ns.ping()}
r["list"] = {k: (type(v).__name__, v) for k, v in ns.list(prefix="interop.").items()}
found = ns.lookup("interop.pyroplug")
r["lookup"] = (type(found).__name__, str(found))
uri, meta = ns.lookup("interop.pyro4", return_metadata=True)
r["lookup_meta"] = (str(uri), sorted(meta))
r["by_meta"] = sorted(ns.list(metadata_all=["interop", "pyroplug"]))
r["pyroname"] = {f: Pyro4.Proxy("PYRONAME:interop.%s@%s:%d" % (f, host, port)).whoami() for f in ("pyro4", "pyroplug")}
r["pyrometa"] = Pyro4.Proxy("PYROMETA:interop,pyro4@%s:%d" % (host, port)).whoami()
r["resolve"] = str(Pyro4.resolve("PYRONAME:interop.pyroplug@%s:%d" % (host, port)))
name = "tmp.client-" + FLAVOR
ns.register(name, "PYRO:tmp@127.0.0.1:4321", metadata={"m1"})
r["safe"] = catch(ns.register, name, "PYRO:other@127.0.0.1:4322", safe=True)
r["tmp"] = str(ns.lookup(name))
r["count"] = ns.count()
r["removed"] = [ns.remove(name), ns.remove(name)]
r["unknown"] = catch(ns.lookup, "no.such.name")
Pyro4.config.NS_PORT = port  # NS_HOST is 127.0.0.1 (environment): locateNS() connects directly
r["default"] = str(Pyro4.locateNS()._pyroUri)
result = r
"""
    )
    services = ns_cell.services
    assert r["uri"] == r["default"] == ns_cell.ns_uri
    assert r["ping"] is None
    assert r["list"] == {f"interop.{f}": ("str", services[f]) for f in FLAVORS}, "list() gives URI strings"
    assert r["lookup"] == ("URI", services["pyroplug"]), "lookup() gives a URI object"
    assert r["lookup_meta"] == (services["pyro4"], ["interop", "pyro4"])
    assert r["by_meta"] == ["interop.pyroplug"]
    assert r["pyroname"]["pyro4"] == "pyro4 4.82" and r["pyroname"]["pyroplug"].startswith("pyroplug ")
    assert r["pyrometa"] == "pyro4 4.82"
    assert r["resolve"] == services["pyroplug"]
    assert short(r["safe"]["__exception__"]) == "NamingError" and "already registered" in r["safe"]["str"]
    assert r["tmp"] == "PYRO:tmp@127.0.0.1:4321"
    assert r["count"] == 4, "the name server itself, two services and the temporary name"
    assert r["removed"] == [1, 0]
    assert short(r["unknown"]["__exception__"]) == "NamingError"
    assert r["unknown"]["args"] == ("unknown name: no.such.name",)


def test_locate_by_broadcast_on_loopback(ns_cell: NsCell) -> None:
    """NS_PORT points nowhere, so locateNS() broadcasts GET_NSURI to 127.0.0.1 on the responder's port."""
    r = ns_cell.run(
        """
assert Pyro4.config.BROADCAST_ADDRS == "127.0.0.1", Pyro4.config.BROADCAST_ADDRS  # never beyond loopback
assert Pyro4.config.NS_PORT != port
Pyro4.config.NS_BCPORT = bcport
ns = Pyro4.locateNS()
result = {"uri": str(ns._pyroUri), "ping": ns.ping(), "pyroname": Pyro4.Proxy("PYRONAME:interop.pyroplug").add(2, 3)}
"""
    )
    assert r == {"uri": ns_cell.ns_uri, "ping": None, "pyroname": 5}


def _nsc(port: int, *args: str) -> str:
    """Run the stock ``python -m Pyro4.nsc`` program against 127.0.0.1:port; its output."""
    done = run_peer([sys.executable, "-m", "Pyro4.nsc", "-n", "127.0.0.1", "-p", str(port), *args],
                    env={"PYTHONHASHSEED": "0"}, timeout=30)
    assert done.returncode == 0, done
    return done.stdout


def _nsc_session(port: int, commands: Sequence[Sequence[str]]) -> list[str]:
    """The outputs of stock ``pyro4-nsc`` commands run one after the other (``peers/nsc_session.py``)."""
    done = run_peer([sys.executable, str(peers_dir() / "nsc_session.py"), "127.0.0.1", str(port), json.dumps(commands)],
                    env={"PYTHONHASHSEED": "0"}, timeout=60)
    assert done.returncode == 0, done
    return [chunk.partition("\n")[2] for chunk in done.stdout.split("=== ")[1:]]


def _normalized(output: str, ns_uri: str) -> str:
    """Mask the name server's URI and sort metadata (its order is a set's iteration order)."""
    lines = []
    for line in output.replace(ns_uri, "<NS-URI>").splitlines():
        head, sep, meta = line.partition("metadata: ")
        if sep:
            line = head + sep + repr(sorted(ast.literal_eval(meta)))
        lines.append(line)
    return "\n".join(lines)


NSC_SESSION = (
    ("ping",),
    ("list",),
    ("list", "interop."),
    ("listmatching", r"interop\.pyro.*"),
    ("lookup", "interop.pyroplug"),
    ("register", "tmp.nsc", "PYRO:tmp@127.0.0.1:4321"),
    ("register", "tmp.nsc", "PYRO:tmp@127.0.0.1:4321"),
    ("setmeta", "tmp.nsc", "red", "green"),
    ("listmeta_all", "red"),
    ("listmeta_any", "red", "blue"),
    ("lookup", "tmp.nsc"),
    ("setmeta", "tmp.nsc"),
    ("remove", "tmp.nsc"),
    ("remove", "tmp.nsc"),
    ("lookup", "tmp.nsc"),
    ("listmatching",),
)
#: pyroplug's name server tags its own entry with its real class too (harmless: lookups by the Pyro4 tag work)
OWN_CLASS_TAG = "'class:pyroplug.naming.NameServer'"


def test_stock_nsc_tool_gives_the_same_session_on_both_name_servers(
    name_servers: dict[str, Peer], registered_daemons: dict[str, Peer]
) -> None:
    """``pyro4-nsc`` lists, registers, sets metadata and removes: its output on the pyroplug name server is
    the stock one's (once the name server's URI is masked and metadata sorted)."""
    outputs: dict[str, list[str]] = {}

    def session(flavor: str) -> None:
        uri = name_servers[flavor].values["ns"]
        outputs[flavor] = [_normalized(out, uri) for out in _nsc_session(int(uri.rpartition(":")[2]), NSC_SESSION)]

    threads = [threading.Thread(target=session, args=(f,)) for f in FLAVORS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stock, ours = outputs["pyro4"], outputs["pyroplug"]
    assert len(stock) == len(ours) == len(NSC_SESSION)
    assert OWN_CLASS_TAG in ours[1]
    ours = [out.replace(", " + OWN_CLASS_TAG, "") for out in ours]
    for cmd, expected, got in zip(NSC_SESSION, stock, ours, strict=True):
        assert got == expected, f"pyro4-nsc {' '.join(cmd)}: stock NS said\n{expected}\npyroplug NS said\n{got}"
    # and what they both said
    assert ours[0] == "Name server ping ok."
    assert "Pyro.NameServer --> <NS-URI>\n    metadata: ['class:Pyro4.naming.NameServer']" in ours[1]
    assert f"interop.pyroplug --> {registered_daemons['pyroplug'].values['plain']}" in ours[2]
    assert ours[5] == "Registered tmp.nsc"
    assert ours[6].startswith("Error: NamingError - name already registered: tmp.nsc")
    assert ours[7] == "Metadata updated"
    assert "tmp.nsc --> PYRO:tmp@127.0.0.1:4321\n    metadata: ['green', 'red']" in ours[8]
    assert ours[11] == "Metadata cleared"
    assert (ours[12], ours[13]) == ("Removed tmp.nsc", "Nothing removed")
    assert ours[14] == "Error: NamingError - unknown name: tmp.nsc"
    assert ours[15].startswith("SystemExit: requires one argument: pattern")


def _start_ns_cli(module: str) -> tuple[Peer, str]:
    """``python -m <module> -n 127.0.0.1 -p 0 -x`` (a real name-server program); (peer, its URI)."""
    ns = Peer([sys.executable, "-m", module, "-n", "127.0.0.1", "-p", "0", "-x"], ready=None, name=module)
    try:
        line = ns.wait_for("URI = ", 30)
    except BaseException:
        ns.stop()
        raise
    return ns, line.partition("URI = ")[2].strip()


@pytest.mark.parametrize("module", ["pyroplug.naming", "Pyro4.naming"])
def test_name_server_programs_with_the_other_flavor(module: str) -> None:
    """A pyroplug daemon registers in the stock ``pyro4-ns`` program and pyroplug proxies resolve through
    it; stock Pyro4 clients and ``pyro4-nsc`` use the ``pyroplug-ns`` program. Both ways, in-process
    pyroplug and a stock Pyro4 driver reach a pyroplug daemon by PYRONAME."""
    import pyroplug
    from pyroplug.testing.services import Calculator

    ns, ns_uri = _start_ns_cli(module)
    port = int(ns_uri.rpartition(":")[2])
    daemon = pyroplug.Daemon(host="127.0.0.1")
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    try:
        uri = daemon.register(Calculator(), "calc")
        thread.start()
        with pyroplug.locateNS("127.0.0.1", port) as nsproxy:
            nsproxy.register("mixed.calc", uri, metadata={"calculator"})
            assert nsproxy.lookup("mixed.calc") == uri
        with pyroplug.Proxy(f"PYRONAME:mixed.calc@127.0.0.1:{port}") as calc:
            assert calc.add(20, 22) == 42
        with pyroplug.Proxy(f"PYROMETA:calculator@127.0.0.1:{port}") as calc:
            assert calc.add(1, 1) == 2
        assert str(pyroplug.resolve(f"PYRONAME:mixed.calc@127.0.0.1:{port}")) == str(uri)
        with Driver("pyro4") as stock:
            assert stock.run("result = Pyro4.Proxy(name).add(1, 2)", name=f"PYRONAME:mixed.calc@127.0.0.1:{port}") == 3
        listing = _nsc(port, "list")
        assert f"mixed.calc --> {uri}\n    metadata: ['calculator']" in listing
        assert re.search(r"Pyro\.NameServer --> PYRO:Pyro\.NameServer@127\.0\.0\.1:\d+", listing)
        assert _nsc(port, "remove", "mixed.calc") == "Removed mixed.calc\n"
    finally:
        daemon.shutdown()
        thread.join(5)
        daemon.close()
        ns.stop()
