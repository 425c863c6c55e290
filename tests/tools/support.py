"""Helpers of the tool tests: a name server and a daemon in threads, a wsgiref server, an HTTP client."""

from __future__ import annotations

import contextlib
import http.client
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from pyroplug.core import nsclient
from pyroplug.core.config import Config, config
from pyroplug.core.context import current_context
from pyroplug.core.daemon import Daemon
from pyroplug.core.expose import expose, oneway
from pyroplug.core.uri import URI
from pyroplug.naming import startNS


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_config() -> Config:
    """A daemon config for threads in tests: quick shutdown."""
    cfg = config.copy()
    cfg.POLLTIMEOUT = 0.2
    return cfg


@expose
class Service:
    """What the gateway tests call: echoes, errors, context, oneway, slow and streamed results."""

    def __init__(self) -> None:
        self.recorded: queue.Queue[Any] = queue.Queue()
        self._value = 7

    def echo(self, message: Any) -> Any:
        return message

    def kwargs(self, **kw: Any) -> dict[str, Any]:
        return kw

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def fail(self) -> None:
        raise ValueError("boom", 42)

    def correlation(self) -> str:
        return str(current_context.correlation_id)

    def peer(self) -> str:
        return str(current_context.client_sock_addr)

    @oneway
    def record(self, value: Any) -> None:
        self.recorded.put(value)

    def record_now(self, value: Any) -> None:
        self.recorded.put(value)

    def slow(self, seconds: Any) -> str:
        time.sleep(float(seconds))
        return "done"

    def count(self, n: Any) -> Any:
        yield from range(int(n))

    @property
    def value(self) -> int:
        return self._value


@dataclass
class Backend:
    """A name server and a service daemon, both serving in threads."""

    ns_uri: URI
    ns_daemon: Any
    daemon: Daemon
    service: Service
    threads: list[threading.Thread]

    @property
    def ns_port(self) -> int:
        assert self.ns_uri.port is not None
        return self.ns_uri.port

    def register(self, name: str, uri: URI | str) -> None:
        with nsclient.locateNS("127.0.0.1", self.ns_port, hmac_key=self.ns_daemon._pyroHmacKey) as ns:
            ns.register(name, uri)

    def stop(self) -> None:
        for d in (self.daemon, self.ns_daemon):
            d.shutdown()
        for t in self.threads:
            t.join(5)
        for d in (self.daemon, self.ns_daemon):
            d.close()


def serve_in_thread(daemon: Any) -> threading.Thread:
    thread = threading.Thread(target=daemon.requestLoop, name="tools-test-daemon", daemon=True)
    thread.start()
    return thread


def start_backend(hmac_key: bytes | None = None) -> Backend:
    """A name server plus a daemon hosting Service as ``http.service`` and ``other.service``."""
    ns_uri, ns_daemon, _ = startNS("127.0.0.1", 0, enableBroadcast=False, hmac=hmac_key, config=server_config())
    daemon = Daemon(host="127.0.0.1", config=server_config())
    if hmac_key:
        daemon._pyroHmacKey = hmac_key
    service = Service()
    uri = daemon.register(service, "service")
    backend = Backend(ns_uri, ns_daemon, daemon, service, [serve_in_thread(ns_daemon), serve_in_thread(daemon)])
    backend.register("http.service", uri)
    backend.register("other.service", uri)
    return backend


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def serve_wsgi(app: Any, server_class: type[WSGIServer] = WSGIServer) -> Iterator[str]:
    """Serve ``app`` with wsgiref on 127.0.0.1 (a free port) in a thread; yields ``host:port``."""
    server = make_server("127.0.0.1", 0, app, server_class=server_class, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def http_request(location: str, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 10.0) -> Reply:
    """One request with http.client (a new connection each time)."""
    conn = http.client.HTTPConnection(location, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()
