"""Test helpers for transports and server types: a plugin registry, request handlers, endpoints, clients."""

from __future__ import annotations

import collections
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from pyroplug.core import protocol
from pyroplug.core.config import Config
from pyroplug.core.plugins import make_plugin_manager
from pyroplug.core.registry import Registry
from pyroplug.core.servertype import ServerType
from pyroplug.core.transport import Connection, Listener, Transport
from pyroplug.core.uri import URI
from pyroplug.testing import memory_transport

MY_BUILTINS = (
    "pyroplug.plugins.transports.tcp",
    "pyroplug.plugins.transports.unix",
    "pyroplug.plugins.servers.thread",
    "pyroplug.plugins.servers.multiplex",
)
SERIALIZER_ID = 1


def make_registry() -> Registry:
    """Builtin transports and server types, plus the memory transport registered like a third party."""
    pm = make_plugin_manager(disabled="", autoload=False, builtins=MY_BUILTINS)
    pm.register(memory_transport, name="pyroplug-testing-memory-transport")
    return Registry.build(pm)


def test_config(**items: Any) -> Config:
    """A Config that ignores the environment, with short poll timeouts for quick tests."""
    cfg = Config()
    cfg.POLLTIMEOUT = 0.2
    for key, value in items.items():
        setattr(cfg, key, value)
    return cfg


test_config.__test__ = False  # type: ignore[attr-defined]


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_UNIX = hasattr(socket, "AF_UNIX")
IS_LINUX = sys.platform.startswith("linux")


@dataclass(frozen=True)
class Endpoint:
    """How to listen for one transport; ``listen`` returns a Listener."""

    id: str
    kind: str
    skip: str | None = None

    def listen(self, transport: Transport, tmp_dir: str) -> Listener:
        if self.id == "tcp4":
            return transport.listen("127.0.0.1", 0)
        if self.id == "tcp6":
            return transport.listen("::1", 0)
        if self.id == "unix":
            return transport.listen(address=os.path.join(tmp_dir, f"s{uuid.uuid4().hex[:8]}.sock"))
        if self.id == "abstract":
            return transport.listen(address=f"\0pyroplug-test-{uuid.uuid4().hex}")
        if self.id == "mem":
            return transport.listen(address=f"test-{uuid.uuid4().hex}")
        raise AssertionError(self.id)


ENDPOINTS = [
    Endpoint("tcp4", "tcp"),
    Endpoint("tcp6", "tcp", None if ipv6_available() else "IPv6 loopback (::1) is not available"),
    Endpoint("unix", "u", None if HAS_UNIX else "no AF_UNIX on this platform"),
    Endpoint("abstract", "u", None if HAS_UNIX and IS_LINUX else "abstract unix sockets need Linux"),
    Endpoint("mem", "mem"),
]


def endpoint_params() -> list[Any]:
    return [
        pytest.param(ep, id=ep.id, marks=[pytest.mark.skip(reason=ep.skip)] if ep.skip else [])
        for ep in ENDPOINTS
    ]


def uri_for(listener: Listener) -> URI:
    return URI("PYRO:obj@" + listener.location)


# --- handlers ---------------------------------------------------------------------------------


class EchoHandler:
    """Replies to every message with a MSG_RESULT carrying the same payload.

    Payload commands: ``sleep:SECONDS`` (sleep, then echo), ``boom`` (raise RuntimeError),
    ``exit`` (raise SystemExit), ``shutdown`` (call server.shutdown(), then echo).
    Records the calls in flight per connection and in total, and their maxima.
    """

    def __init__(self) -> None:
        self.server: ServerType | None = None
        self.lock = threading.Lock()
        self.opened: list[Connection] = []
        self.closed: list[Connection] = []
        self.closed_event = threading.Event()
        self.housekeeping_calls = 0
        self.active: collections.Counter[int] = collections.Counter()
        self.max_active_per_conn: collections.Counter[int] = collections.Counter()
        self.active_total = 0
        self.max_active_total = 0
        self.threads: set[str] = set()
        self.calls = 0
        #: connections whose connection_closed came while one of their calls still ran (must stay empty)
        self.closed_during_call: list[Connection] = []

    def connection_opened(self, conn: Connection) -> None:
        with self.lock:
            self.opened.append(conn)

    def connection_closed(self, conn: Connection) -> None:
        with self.lock:
            self.closed.append(conn)
            if self.active[id(conn)]:
                self.closed_during_call.append(conn)
        self.closed_event.set()

    def run_housekeeping(self) -> None:
        with self.lock:
            self.housekeeping_calls += 1

    def handle_message(self, conn: Connection, msg: protocol.Message) -> None:
        key = id(conn)
        with self.lock:
            self.calls += 1
            self.active[key] += 1
            self.active_total += 1
            self.max_active_per_conn[key] = max(self.max_active_per_conn[key], self.active[key])
            self.max_active_total = max(self.max_active_total, self.active_total)
            self.threads.add(threading.current_thread().name)
        try:
            data = bytes(msg.data)
            if data.startswith(b"sleep:"):
                time.sleep(float(data[6:]))
            elif data == b"boom":
                raise RuntimeError("boom from the handler")
            elif data == b"exit":
                raise SystemExit(3)
            elif data == b"shutdown":
                assert self.server is not None
                self.server.shutdown()
            conn.send_parts(*protocol.encode_parts(protocol.MSG_RESULT, msg.data, msg.serializer_id, seq=msg.seq))
        finally:
            with self.lock:
                self.active[key] -= 1
                self.active_total -= 1


# --- running a server -------------------------------------------------------------------------


class RunningServer:
    """A server type serving a handler on a listener, its loop in a background thread."""

    def __init__(
        self,
        registry: Registry,
        server_name: str,
        endpoint: Endpoint,
        tmp_dir: str,
        config: Config | None = None,
        handler: EchoHandler | None = None,
        run_loop: bool = True,
    ) -> None:
        self.config = config or test_config()
        self.registry = registry
        self.transport = registry.transport_for(endpoint.kind)(self.config)
        self.listener = endpoint.listen(self.transport, tmp_dir)
        self.uri = uri_for(self.listener)
        self.handler = handler or EchoHandler()
        self.server = registry.server_type(server_name)(self.config)
        self.handler.server = self.server
        self.server.init(self.handler, self.listener)
        self.loop_error: BaseException | None = None
        self.thread: threading.Thread | None = None
        if run_loop:
            self.thread = threading.Thread(target=self._run, name="test-loop", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            self.server.loop()
        except BaseException as exc:  # pragma: no cover - reported by stop()
            self.loop_error = exc

    def connect(self, timeout: float | None = 10.0) -> Connection:
        client_transport = self.registry.transport_for(self.uri.location_kind)(self.config)
        return client_transport.connect(self.uri, timeout)

    def stop(self) -> None:
        self.server.shutdown()
        if self.thread is not None:
            self.thread.join(5)
            assert not self.thread.is_alive(), "loop() did not return after shutdown()"
        self.server.close()
        assert self.loop_error is None, self.loop_error
        assert not self.handler.closed_during_call, "connection_closed while a call of it was running"


@contextmanager
def running(
    registry: Registry, server_name: str, endpoint: Endpoint, tmp_dir: str, **kwargs: Any
) -> Iterator[RunningServer]:
    srv = RunningServer(registry, server_name, endpoint, tmp_dir, **kwargs)
    try:
        yield srv
    finally:
        srv.stop()


# --- a raw client -----------------------------------------------------------------------------


def send_request(conn: Connection, payload: bytes, seq: int = 0) -> None:
    conn.send_parts(*protocol.encode_parts(protocol.MSG_INVOKE, payload, SERIALIZER_ID, seq=seq))


def call(conn: Connection, payload: bytes, seq: int = 0) -> bytes:
    """One request/reply round trip; returns the reply payload."""
    send_request(conn, payload, seq)
    msg = conn.recv_message()
    assert msg.type == protocol.MSG_RESULT
    assert msg.seq == seq
    return bytes(msg.data)


def wait_closed_by_server(conn: Connection, timeout: float = 5.0) -> bool:
    """True when the server closes ``conn`` (EOF or reset) within ``timeout``."""
    conn.settimeout(timeout)
    try:
        while True:
            buf = bytearray(4096)
            if conn.recv_into(memoryview(buf)) == 0:
                return True
    except Exception as exc:  # ConnectionClosedError on a reset, TimeoutError when still open
        return "timeout" not in str(exc)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def raise_nofile(needed: int) -> None:
    """Raise the soft RLIMIT_NOFILE to ``needed`` (skip the test when the hard limit is lower)."""
    try:
        import resource
    except ImportError:  # pragma: no cover
        pytest.skip("no resource module")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
