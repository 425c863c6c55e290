"""The name server on the wire: pyroplug and stock Pyro4 4.82 clients and servers, every safe serializer."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import Pyro4
import Pyro4.core
import Pyro4.errors
import Pyro4.naming
import pytest

from pyroplug import errors
from pyroplug.core.config import config
from pyroplug.core.constants import NAMESERVER_NAME
from pyroplug.core.nsclient import locateNS, resolve
from pyroplug.core.proxy import Proxy
from pyroplug.core.uri import URI
from tests.naming.conftest import PYTHON, RunningNS, free_port, run_ns, test_env

SAFE_SERIALIZERS = ["serpent", "json", "marshal", "msgpack"]


@pytest.fixture
def pyro4_config() -> Iterator[None]:
    """Stock Pyro4's global config, restored afterwards."""
    saved = Pyro4.config.asDict()
    yield
    for key, value in saved.items():
        setattr(Pyro4.config, key, value)


@pytest.fixture(params=["multiplex", "thread"])
def any_server_ns(request: pytest.FixtureRequest) -> Iterator[RunningNS]:
    running = run_ns("127.0.0.1", 0, servertype=request.param)
    yield running
    running.stop()


@pytest.mark.parametrize("serializer", SAFE_SERIALIZERS)
def test_pyroplug_client_every_serializer(any_server_ns: RunningNS, serializer: str) -> None:
    ns_server = any_server_ns
    cfg = config.copy()
    cfg.SERIALIZER = serializer
    with Proxy(ns_server.uri, config=cfg) as ns:
        ns.register("wire.a", "PYRO:a@localhost:4000", metadata={"t1", "t2"})
        ns.register("wire.b", URI("PYRO:b@localhost:4001"), safe=True)
        found = ns.lookup("wire.a")
        assert isinstance(found, URI) and str(found) == "PYRO:a@localhost:4000"
        uri, meta = ns.lookup("wire.a", return_metadata=True)  # a URI inside a tuple (even under marshal)
        assert isinstance(uri, URI) and list(meta) == ["t1", "t2"]
        assert ns.list(prefix="wire.") == {"wire.a": "PYRO:a@localhost:4000", "wire.b": "PYRO:b@localhost:4001"}
        listed = ns.list(metadata_any=["t2"], return_metadata=True)
        assert {k: (v[0], list(v[1])) for k, v in listed.items()} == {"wire.a": ("PYRO:a@localhost:4000", ["t1", "t2"])}
        with pytest.raises(errors.NamingError, match="unknown name: nope"):
            ns.lookup("nope")
        with pytest.raises(errors.NamingError, match="already registered"):
            ns.register("wire.b", "PYRO:b@localhost:1", safe=True)
        with pytest.raises(TypeError):
            ns.register("x", "PYRO:x@h:1", metadata="str")
        with pytest.raises(ValueError, match="one thing at a time"):
            ns.list(prefix="a", regex="b")
        assert ns.remove(prefix="wire.") == 2
        assert ns.count() == 1 and ns.ping() is None


@pytest.mark.interop
def test_stock_pyro4_client_against_pyroplug_ns(ns_server: RunningNS, pyro4_config: None) -> None:
    with Pyro4.Proxy(str(ns_server.uri)) as ns:
        ns._pyroBind()
        assert ns._pyroMethods == {"count", "list", "lookup", "ping", "register", "remove", "set_metadata"}
        ns.register("p4.obj", Pyro4.core.URI("PYRO:obj@localhost:5555"), metadata={"m"})
        found = ns.lookup("p4.obj")
        assert isinstance(found, Pyro4.core.URI) and found.port == 5555
        assert ns.lookup("p4.obj", return_metadata=True)[1] == ["m"]
        assert ns.list(prefix="p4.") == {"p4.obj": "PYRO:obj@localhost:5555"}
        own = ns.list(metadata_all={"class:Pyro4.naming.NameServer"})
        assert own == {NAMESERVER_NAME: str(ns_server.uri)}
        with pytest.raises(Pyro4.errors.NamingError, match="unknown name"):
            ns.lookup("missing")
        with pytest.raises(Pyro4.errors.NamingError, match="invalid regex"):
            ns.list(regex="(")
        assert ns.remove("p4.obj") == 1
    # Pyro4's own name resolution (PYRONAME, PYROMETA, locateNS) works against our name server
    Pyro4.config.NS_HOST, Pyro4.config.NS_PORT = "127.0.0.1", ns_server.uri.port
    Pyro4.config.BROADCAST_ADDRS = "127.0.0.1"
    with Pyro4.naming.locateNS("127.0.0.1", ns_server.uri.port) as ns:
        assert ns.count() == 1
    assert str(Pyro4.naming.resolve(f"PYRONAME:{NAMESERVER_NAME}@127.0.0.1:{ns_server.uri.port}")) == str(ns_server.uri)
    meta = Pyro4.naming.resolve(f"PYROMETA:class:Pyro4.naming.NameServer@127.0.0.1:{ns_server.uri.port}")
    assert str(meta) == str(ns_server.uri)


@pytest.fixture
def pyro4_ns() -> Iterator[URI]:
    """Stock Pyro4 4.82's name server in a subprocess (python -m Pyro4.naming)."""
    port = free_port()
    proc = subprocess.Popen([PYTHON, "-m", "Pyro4.naming", "-n", "127.0.0.1", "-p", str(port), "-x"],
                            env=test_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    uri = URI(f"PYRO:{NAMESERVER_NAME}@127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with locateNS("127.0.0.1", port):
                    break
            except errors.NamingError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield uri
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.interop
def test_pyroplug_client_against_stock_pyro4_ns(pyro4_ns: URI) -> None:
    with locateNS(pyro4_ns.host, pyro4_ns.port) as ns:
        ns.register("pp.obj", URI("PYRO:obj@localhost:6000"), metadata={"z"})
        found = ns.lookup("pp.obj")
        assert isinstance(found, URI) and str(found) == "PYRO:obj@localhost:6000"
        assert ns.list(metadata_all=["z"]) == {"pp.obj": "PYRO:obj@localhost:6000"}
        with pytest.raises(errors.NamingError):
            ns.lookup("missing")
    where = f"{pyro4_ns.host}:{pyro4_ns.port}"
    assert str(resolve(f"PYRONAME:pp.obj@{where}")) == "PYRO:obj@localhost:6000"
    assert str(resolve(f"PYROMETA:z@{where}")) == "PYRO:obj@localhost:6000"
    with pytest.raises(errors.NamingError, match="no registrations available"):
        resolve(f"PYROMETA:nothing@{where}")
