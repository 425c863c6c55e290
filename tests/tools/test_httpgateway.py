"""The HTTP gateway over real HTTP (http.client / urllib) against a real name server and daemon on 127.0.0.1."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyroplug.core.daemon import Daemon
from pyroplug.testing.interop import Peer, run_peer
from pyroplug.tools import httpgateway
from pyroplug.tools.httpgateway import DEFAULT_EXPOSE, HttpGateway, ThreadingWSGIServer
from tests.tools.support import (
    Backend,
    Service,
    free_port,
    http_request,
    serve_in_thread,
    serve_wsgi,
    server_config,
    start_backend,
)

JSON = "application/json; charset=utf-8"


@pytest.fixture(scope="module")
def gateway(backend: Backend) -> Iterator[tuple[HttpGateway, str]]:
    """The gateway app with Pyro4's default expose regex, served by a threading wsgiref server."""
    app = HttpGateway(ns_host="127.0.0.1", ns_port=backend.ns_port, comm_timeout=5.0)
    with serve_wsgi(app, ThreadingWSGIServer) as location:
        yield app, location
    app.close()


@pytest.fixture
def gw(gateway: tuple[HttpGateway, str]) -> str:
    return gateway[1]


def get(location: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A GET with urllib (HTTP errors returned, not raised)."""
    request = urllib.request.Request(f"http://{location}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def test_default_expose_is_pyro4s() -> None:
    assert DEFAULT_EXPOSE == r"http\."
    assert httpgateway.pyro_app.ns_regex == r"http\."
    assert httpgateway.DEFAULT_PORT == 8080


def test_call_with_query_arguments(gw: str) -> None:
    status, headers, body = get(gw, "/pyro/http.service/echo?message=hello%20w%C3%B6rld")
    assert status == 200
    assert headers["Content-Type"] == JSON
    assert json.loads(body) == "hello w\u00f6rld"
    uuid.UUID(headers["X-Pyro-Correlation-Id"])  # a fresh one


def test_repeated_parameters_become_lists_and_blank_ones_are_dropped(gw: str) -> None:
    reply = http_request(gw, "GET", "/pyro/http.service/kwargs?a=1&b=x&b=y&c=")
    assert reply.status == 200
    assert reply.json() == {"a": "1", "b": ["x", "y"]}


def test_correlation_id_in_and_out(gw: str) -> None:
    corr = str(uuid.uuid4())
    reply = http_request(gw, "GET", "/pyro/http.service/correlation", headers={"X-Pyro-Correlation-Id": corr})
    assert reply.status == 200
    assert reply.json() == corr  # the daemon saw it
    assert reply.headers["X-Pyro-Correlation-Id"] == corr
    bad = http_request(gw, "GET", "/pyro/http.service/correlation", headers={"X-Pyro-Correlation-Id": "nope"})
    assert bad.status == 400 and bad.json()["__class__"] == "builtins.ValueError"


def test_post_form_json_and_multipart(gw: str) -> None:
    form = http_request(gw, "POST", "/pyro/http.service/kwargs?q=1", body=b"a=1&a=2&b=%C3%A9",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 200 and form.json() == {"a": ["1", "2"], "b": "\u00e9", "q": "1"}
    typed = http_request(gw, "POST", "/pyro/http.service/add", body=json.dumps({"a": 40, "b": 2}).encode(),
                         headers={"Content-Type": "application/json"})
    assert typed.status == 200 and typed.json() == 42
    lists = http_request(gw, "POST", "/pyro/http.service/add", body=json.dumps({"a": [1], "b": [2, None]}).encode(),
                         headers={"Content-Type": "application/json; charset=utf-8"})
    assert lists.json() == [1, 2, None]
    boundary = "xXxBOUNDARYxXx"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfirst\r\n"
                 f"--{boundary}\r\nContent-Disposition: form-data; name=\"b\"; filename=\"b.txt\"\r\n"
                 f"Content-Type: text/plain\r\n\r\nsecond\r\n--{boundary}--\r\n").encode()
    mp = http_request(gw, "POST", "/pyro/http.service/kwargs", body=multipart,
                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert mp.status == 200 and mp.json() == {"a": "first", "b": "second"}
    for body in (b"{nope", b"[1, 2]"):
        bad = http_request(gw, "POST", "/pyro/http.service/kwargs", body=body, headers={"Content-Type": "application/json"})
        assert bad.status == 400 and bad.json()["__exception__"] is True


def test_meta_and_attributes(gw: str) -> None:
    meta = http_request(gw, "GET", "/pyro/http.service/$meta")
    assert meta.status == 200 and meta.headers["Content-Type"] == JSON
    assert meta.json() == {
        "methods": ["add", "correlation", "count", "echo", "fail", "kwargs", "peer", "record", "record_now", "slow"],
        "attributes": ["value"],
    }
    value = http_request(gw, "GET", "/pyro/http.service/value")
    assert value.status == 200 and value.json() == 7
    with_args = http_request(gw, "GET", "/pyro/http.service/value?x=1")
    assert with_args.status == 400


def test_remote_exception_is_500_with_pyro4s_json(gw: str) -> None:
    reply = http_request(gw, "GET", "/pyro/http.service/fail", headers={"X-Pyro-Correlation-Id": str(uuid.UUID(int=5))})
    assert reply.status == 500
    assert reply.headers["Content-Type"] == JSON
    error = reply.json()
    assert error["__class__"] == "builtins.ValueError"
    assert error["__exception__"] is True
    assert error["args"] == ["boom", 42]
    assert "in fail" in "".join(error["attributes"]["_pyroTraceback"])
    assert reply.headers["X-Pyro-Correlation-Id"] == str(uuid.UUID(int=5))


def test_unknown_name_method_and_paths(gw: str) -> None:
    unknown = http_request(gw, "GET", "/pyro/http.nope/echo")
    assert unknown.status == 404
    assert unknown.json()["__class__"] == "Pyro4.errors.NamingError"
    assert unknown.json()["args"] == ["unknown name: http.nope"]
    method = http_request(gw, "GET", "/pyro/http.service/nope")
    assert method.status == 404 and method.json()["__class__"] == "builtins.AttributeError"
    private = http_request(gw, "GET", "/pyro/http.service/_value")
    assert private.status == 404
    no_method = http_request(gw, "GET", "/pyro/http.service")
    assert no_method.status == 404 and no_method.json()["__exception__"] is True
    outside = http_request(gw, "GET", "/elsewhere")
    assert (outside.status, outside.body) == (404, b"Error 404: Not Found")
    put = http_request(gw, "PUT", "/pyro/http.service/echo")
    assert put.status == 405 and put.headers["Allow"] == "GET, POST"
    for path in ("/", "/pyro"):
        redirect = http_request(gw, "GET", path)
        assert redirect.status == 302 and redirect.headers["Location"] == "/pyro/"


def test_expose_regex(gw: str, backend: Backend) -> None:
    refused = http_request(gw, "GET", "/pyro/other.service/echo?message=x")
    assert refused.status == 403
    assert refused.json()["args"] == ["403 Forbidden - access to the requested object has been denied"]
    assert http_request(gw, "GET", "/pyro/Pyro.NameServer/list").status == 403
    everything = HttpGateway("", ns_host="127.0.0.1", ns_port=backend.ns_port)
    with serve_wsgi(everything) as location:  # the plain single-threaded wsgiref server works too
        assert http_request(location, "GET", "/pyro/other.service/echo?message=x").json() == "x"
        listing = http_request(location, "GET", "/pyro/Pyro.NameServer/list")
        assert listing.status == 200 and set(listing.json()) == {"Pyro.NameServer", "http.service", "other.service"}
    everything.close()


def test_gateway_key(backend: Backend) -> None:
    app = HttpGateway(ns_host="127.0.0.1", ns_port=backend.ns_port, gateway_key="s3cret")
    with serve_wsgi(app) as location:
        missing = http_request(location, "GET", "/pyro/http.service/echo?message=x")
        assert missing.status == 403
        assert missing.json()["args"] == ["403 Forbidden - incorrect gateway api key"]
        wrong = http_request(location, "GET", "/pyro/http.service/echo?message=x", headers={"X-Pyro-Gateway-Key": "nope"})
        assert wrong.status == 403
        header = http_request(location, "GET", "/pyro/http.service/echo?message=x", headers={"X-Pyro-Gateway-Key": "s3cret"})
        assert (header.status, header.json()) == (200, "x")
        param = http_request(location, "GET", "/pyro/http.service/kwargs?%24key=s3cret&a=1")
        assert (param.status, param.json()) == (200, {"a": "1"})  # $key is not passed on
    app.close()


def test_oneway_header(gw: str, backend: Backend) -> None:
    start = time.monotonic()
    reply = http_request(gw, "GET", "/pyro/http.service/slow?seconds=1.5", headers={"X-Pyro-Options": "oneway"})
    assert (reply.status, reply.body) == (200, b"")
    assert time.monotonic() - start < 1.0
    reply = http_request(gw, "GET", "/pyro/http.service/record_now?value=a", headers={"X-Pyro-Options": "oneway"})
    assert (reply.status, reply.body) == (200, b"")
    assert backend.service.recorded.get(timeout=5) == "a"
    declared = http_request(gw, "GET", "/pyro/http.service/record?value=b")  # @oneway on the server
    assert (declared.status, declared.body) == (200, b"")
    assert backend.service.recorded.get(timeout=5) == "b"


def test_generator_results_are_collected(gw: str) -> None:
    reply = http_request(gw, "GET", "/pyro/http.service/count?n=4")
    assert (reply.status, reply.json()) == (200, [0, 1, 2, 3])
    assert http_request(gw, "GET", "/pyro/http.service/echo?message=after").json() == "after"


def test_connections_are_pooled_and_reused(gateway: tuple[HttpGateway, str]) -> None:
    app, location = gateway
    peers = {http_request(location, "GET", "/pyro/http.service/peer").json() for _ in range(5)}
    assert len(peers) == 1  # sequential requests share one connection to the daemon
    results: list[int] = []
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            results.append(http_request(location, "GET", "/pyro/http.service/slow?seconds=0.4").status)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=slow) for _ in range(6)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors and results == [200] * 6
    assert time.monotonic() - start < 6 * 0.4  # concurrent requests do not queue on one connection
    entry = app._entries["http.service"]
    assert 1 <= len(entry.idle) <= app.max_idle


def test_moved_object_and_unreachable_daemon(gateway: tuple[HttpGateway, str], backend: Backend) -> None:
    app, gw = gateway
    first = Daemon(host="127.0.0.1", config=server_config())
    first_thread = serve_in_thread(first)
    backend.register("http.moving", first.register(Service(), "moving"))
    before = http_request(gw, "GET", "/pyro/http.moving/peer")
    assert before.status == 200
    first.shutdown()
    first_thread.join(5)
    first.close()
    second = Daemon(host="127.0.0.1", config=server_config())
    second_thread = serve_in_thread(second)
    try:
        moved = second.register(Service(), "moving")
        backend.register("http.moving", moved)
        after = http_request(gw, "GET", "/pyro/http.moving/echo?message=moved")
        assert (after.status, after.json()) == (200, "moved")  # dropped connection, stale URI: looked up again
        assert app._entries["http.moving"].uri == moved
    finally:
        second.shutdown()
        second_thread.join(5)
        second.close()
    backend.register("http.dead", f"PYRO:dead@127.0.0.1:{free_port()}")
    dead = http_request(gw, "GET", "/pyro/http.dead/echo?message=x")
    assert dead.status == 502
    assert dead.json()["__class__"] == "Pyro4.errors.CommunicationError"


def test_timeout_is_504(backend: Backend) -> None:
    app = HttpGateway(ns_host="127.0.0.1", ns_port=backend.ns_port, comm_timeout=0.3)
    with serve_wsgi(app) as location:
        reply = http_request(location, "GET", "/pyro/http.service/slow?seconds=1")
        assert reply.status == 504
        assert reply.json()["__class__"] == "Pyro4.errors.TimeoutError"
        assert http_request(location, "GET", "/pyro/http.service/echo?message=ok").json() == "ok"
    app.close()


def test_name_server_down_is_503() -> None:
    app = HttpGateway(ns_host="127.0.0.1", ns_port=free_port())
    with serve_wsgi(app) as location:
        reply = http_request(location, "GET", "/pyro/http.service/echo?message=x")
        assert reply.status == 503
        assert reply.json()["__class__"] == "Pyro4.errors.NamingError"
        index = http_request(location, "GET", "/pyro/")
        assert index.status == 503 and b"name server" in index.body


def test_index_page(gw: str) -> None:
    status, headers, body = get(gw, "/pyro/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "http.service" in page and "other.service" not in page
    assert 'href="http.service/$meta"' in page and 'href="http.service/echo"' in page
    assert 'href="http.service/value"' in page


def test_hmac_key() -> None:
    backend = start_backend(hmac_key=b"pyro-hmac")
    try:
        keyed = HttpGateway(ns_host="127.0.0.1", ns_port=backend.ns_port, hmac_key="pyro-hmac")
        keyless = HttpGateway(ns_host="127.0.0.1", ns_port=backend.ns_port)
        with serve_wsgi(keyed) as location:
            assert http_request(location, "GET", "/pyro/http.service/echo?message=k").json() == "k"
        with serve_wsgi(keyless) as location:
            assert http_request(location, "GET", "/pyro/http.service/echo?message=k").status == 503
        keyed.close()
        keyless.close()
    finally:
        backend.stop()


def test_pyro_app_attributes_like_pyro4(backend: Backend) -> None:
    app = HttpGateway()
    app.ns_regex = r"other\."
    app.gateway_key = b"k"
    app.hmac_key = None
    app.comm_timeout = 2.0
    app.ns_host, app.ns_port = "127.0.0.1", backend.ns_port
    with serve_wsgi(app) as location:
        reply = http_request(location, "GET", "/pyro/other.service/echo?message=o", headers={"X-Pyro-Gateway-Key": "k"})
        assert (reply.status, reply.json()) == (200, "o")
        assert http_request(location, "GET", "/pyro/http.service/echo?message=o", headers={"X-Pyro-Gateway-Key": "k"}).status == 403
    app.close()


def test_cli(backend: Backend) -> None:
    argv = [sys.executable, "-m", "pyroplug.tools.httpgateway", "-H", "127.0.0.1", "-p", "0",
            "--nshost", "127.0.0.1", "--nsport", str(backend.ns_port), "-t", "5"]
    peer = Peer(argv, env={"PYRO_HTTPGATEWAY_KEY": "s3cret"}, ready=None, name="pyroplug-httpgateway")
    try:
        line = peer.wait_for("Pyro HTTP gateway running on http://", 20)
        location = urllib.parse.urlsplit(line.split(" on ", 1)[1].strip()).netloc
        key = {"X-Pyro-Gateway-Key": "s3cret"}
        assert http_request(location, "GET", "/pyro/http.service/echo?message=cli", headers=key).json() == "cli"
        assert http_request(location, "GET", "/pyro/http.service/echo?message=cli").status == 403
        assert http_request(location, "GET", "/pyro/other.service/echo?message=cli", headers=key).status == 403
        assert peer.alive
    finally:
        rc = peer.stop()
    assert rc == 0, peer.describe()
    assert any("Exposing objects with names matching: http\\." in line for line in peer.output)
    assert any("Connected to name server at: PYRO:Pyro.NameServer@127.0.0.1" in line for line in peer.output)


def test_cli_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Path(sys.executable).parent / "pyroplug-httpgateway"
    helped = run_peer([str(script), "--help"], timeout=20)
    assert helped.returncode == 0 and "--expose" in helped.stdout and "--gatewaykey" in helped.stdout
    monkeypatch.setenv("PYRO_HTTPGATEWAY_KEY", "x")
    with pytest.raises(SystemExit) as info:
        httpgateway.main(["-g", "y"])
    assert info.value.code == 2
