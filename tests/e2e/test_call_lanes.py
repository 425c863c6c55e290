"""The call lanes (pyroplug.core.lane) over real sockets: the same results, errors and bytes as the
general path, and the general path for everything the lanes leave to it.

A proxy's lane makes its plain calls from the second call of a connection on; a daemon's serving
lane serves a connection's plain calls once the connection asked for its second request. The
reference behaviour is that of proxies and daemons without lanes (``_pyroInvoke`` overridden, or a
daemon whose ``receiver`` gives none), which take the general path for every message.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pyroplug import errors
from pyroplug.core.blob import SerializedBlob
from pyroplug.core.config import Config
from pyroplug.core.context import current_context
from pyroplug.core.daemon import Daemon
from pyroplug.core.expose import expose, oneway
from pyroplug.core.protocol import FLAGS_EXCEPTION, MSG_INVOKE, MSG_RESULT, encode
from pyroplug.core.proxy import Proxy
from pyroplug.core.registry import get_registry
from pyroplug.core.tracebacks import getPyroTraceback
from tests.e2e.rawwire import RawClient

pytestmark = pytest.mark.timeout(60)

KINDS = [("thread", "tcp"), ("thread", "unix"), ("multiplex", "tcp"), ("multiplex", "unix")]
SERIALIZERS = ["marshal", "json", "serpent", "msgpack", "pickle"]
VALUES: list[Any] = [0, -1, 2**40, 1.5, "", "text", "ünïcode ✓", None, True, [], [1, [2, [3]]], {"a": 1},
                     {"nested": {"list": [1, 2, "x"]}}, b"bytes", b"\x00" * 5000, "x" * 70_000, list(range(3000))]


@expose
class Service:
    def __init__(self) -> None:
        self.oneway_calls = threading.Event()
        self.seen: list[Any] = []

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def echo(self, value: Any) -> Any:
        return value

    def fail(self, text: str) -> None:
        raise ValueError(text)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def blob_info(self, blob: SerializedBlob) -> Any:
        return [blob.info, blob.deserialized()]

    def count(self, n: int) -> Any:
        return iter(range(n))

    def context(self) -> Any:
        ctx = current_context
        self.seen.append((dict(ctx.annotations), ctx.correlation_id_bytes))
        return sorted(ctx.annotations)

    def answer_with_annotation(self) -> str:
        current_context.response_annotations = {"XTRA": b"extra"}
        return "annotated"

    @oneway
    def ping(self) -> None:
        self.oneway_calls.set()


class RecordingDaemon(Daemon):
    """A daemon that keeps every connection it accepted (for looking at their lanes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.opened: list[Any] = []
        super().__init__(*args, **kwargs)

    def connection_opened(self, conn: Any) -> None:
        self.opened.append(conn)
        super().connection_opened(conn)


class LanelessDaemon(RecordingDaemon):
    """The reference daemon: every message goes through handle_message."""

    def receiver(self, conn: Any) -> Any:
        return None


class LanelessProxy(Proxy):
    """The reference proxy: every call goes through _pyroInvoke's general path."""

    def _pyroInvoke(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return super()._pyroInvoke(*args, **kwargs)


@contextlib.contextmanager
def serving(servertype: str, transport: str, daemon_class: type[Daemon] = RecordingDaemon, **items: Any) -> Iterator[Any]:
    """(daemon, service, uri, config) of a daemon in a background thread that accepts every serializer."""
    cfg = Config()
    cfg.SERVERTYPE = servertype
    cfg.POLLTIMEOUT = 0.5
    cfg.SERIALIZERS_ACCEPTED = set(SERIALIZERS)
    for key, value in items.items():
        setattr(cfg, key, value)
    tmpdir = tempfile.mkdtemp(prefix="ppl-", dir="/tmp" if os.path.isdir("/tmp") else None)
    if transport == "unix":
        daemon = daemon_class(unixsocket=os.path.join(tmpdir, "d.sock"), config=cfg)
    else:
        daemon = daemon_class(host="127.0.0.1", config=cfg)
    service = Service()
    uri = daemon.register(service, "svc")
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        yield daemon, service, uri, cfg
    finally:
        daemon.shutdown()
        thread.join(10)
        daemon.close()
        shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture(params=KINDS, ids=[f"{s}-{t}" for s, t in KINDS])
def served(request: pytest.FixtureRequest) -> Iterator[Any]:
    with serving(*request.param) as running:
        yield running


def _proxy(uri: Any, cfg: Config, serializer: str = "marshal", cls: type[Proxy] = Proxy) -> Proxy:
    pcfg = cfg.copy()
    pcfg.SERIALIZER = serializer
    return cls(uri, config=pcfg)


# --- the proxy's lane -------------------------------------------------------------------------------
def test_a_connected_proxy_calls_through_its_lane(served: Any) -> None:
    _daemon, _service, uri, cfg = served
    with _proxy(uri, cfg) as proxy:
        assert proxy.add(1, 2) == 3  # the connection's first call: the general path
        assert proxy.add(2, 3) == 5  # opens the lane
        lane = proxy._lane
        assert callable(lane)
        seq = proxy._pyroSeq
        assert [proxy.add(i, 1) for i in range(100)] == list(range(1, 101))
        assert proxy._pyroSeq == seq + 100
        assert proxy._lane is lane
        proxy._pyroRelease()
        assert proxy._lane is None
        assert proxy.add(3, 4) == 7  # reconnects
        assert proxy.add(4, 4) == 8
        assert callable(proxy._lane) and proxy._lane is not lane


@pytest.mark.parametrize("serializer", SERIALIZERS)
def test_results_through_the_lanes_equal_the_general_path(serializer: str) -> None:
    values = [v for v in VALUES if not (serializer == "json" and isinstance(v, bytes))]
    with serving("thread", "tcp") as (_d, _s, uri, cfg), serving("thread", "tcp", LanelessDaemon) as (_d2, _s2, uri2, cfg2):
        with _proxy(uri, cfg, serializer) as fast, _proxy(uri2, cfg2, serializer, LanelessProxy) as slow:
            fast.echo(None)
            for value in values:
                expected = slow.echo(value)
                assert fast.echo(value) == expected
                assert type(fast.echo(value)) is type(expected)
            assert callable(fast._lane)
            assert not slow._lane


def test_calls_that_are_not_plain_take_the_general_path_and_work(served: Any) -> None:
    _daemon, service, uri, cfg = served
    with _proxy(uri, cfg) as proxy:
        proxy.add(0, 0)
        proxy.add(0, 0)
        assert callable(proxy._lane)
        assert proxy.ping() is None  # oneway
        assert service.oneway_calls.wait(5)
        current_context.annotations = {"XANN": b"value"}
        try:
            assert proxy.context() == ["XANN"]  # request annotations travel
        finally:
            current_context.annotations = {}
        current_context.correlation_id = None
        big = b"x" * (1 << 20)
        assert proxy.echo(big) == big  # large bytes go out without a copy
        with pytest.raises(ValueError, match="boom") as info:
            proxy.fail("boom")
        assert "Remote traceback" in "".join(getPyroTraceback(ValueError, info.value, info.value.__traceback__))
        assert list(proxy.count(5)) == [0, 1, 2, 3, 4]  # an item stream
        assert proxy.answer_with_annotation() == "annotated"
        assert current_context.response_annotations["XTRA"] == b"extra"
        assert proxy.add(40, 2) == 42
        assert current_context.response_annotations.keys() == {"CORR"}
        assert proxy.echo("y" * 200_000) == "y" * 200_000  # a large reply
        assert proxy.add(1, 1) == 2


def test_a_blob_argument_takes_the_general_path(served: Any) -> None:
    _daemon, _service, uri, cfg = served
    with _proxy(uri, cfg, "serpent") as proxy:
        proxy.add(0, 0)
        proxy.add(0, 0)
        assert proxy.blob_info(SerializedBlob("info", [1, 2, 3])) == ["info", [1, 2, 3]]


def test_compression_and_message_size_config_apply_to_lane_calls(served: Any) -> None:
    _daemon, _service, uri, cfg = served
    with _proxy(uri, cfg) as proxy:
        proxy.add(0, 0)
        proxy.add(0, 0)
        proxy._pyroConfig.COMPRESSION = True
        assert proxy.echo("z" * 5000) == "z" * 5000
        proxy._pyroConfig.COMPRESSION = False
        proxy._pyroConfig.MAX_MESSAGE_SIZE = 1000
        lane = proxy._lane
        with pytest.raises(errors.MessageTooLargeError):
            proxy.echo("z" * 5000)
        assert proxy._lane is lane  # nothing was sent: the connection stays
        proxy._pyroConfig.MAX_MESSAGE_SIZE = 0
        assert proxy.add(2, 2) == 4


def test_a_raw_wire_response_switch_drops_the_lane(served: Any) -> None:
    _daemon, _service, uri, cfg = served
    with _proxy(uri, cfg) as proxy:
        proxy.add(0, 0)
        proxy.add(0, 0)
        assert callable(proxy._lane)
        proxy._pyroRawWireResponse = True
        msg = proxy.add(1, 2)
        assert msg.type == MSG_RESULT and not msg.flags
        proxy._pyroRawWireResponse = False
        assert proxy.add(1, 2) == 3


def test_no_lane_with_hmac_or_wire_logging_or_an_overridden_invoke(served: Any) -> None:
    _daemon, _service, uri, cfg = served
    with _proxy(uri, cfg) as proxy:
        proxy._pyroHmacKey = b"secret"  # (this daemon has none: the call fails, the lane must not hide it)
        with pytest.raises(errors.PyroError):
            proxy.add(1, 2)
        assert not proxy._lane
    with _proxy(uri, cfg) as proxy:
        proxy._pyroConfig.LOGWIRE = True
        assert proxy.add(1, 2) == 3
        assert proxy.add(1, 2) == 3
        assert proxy._lane is False
    calls = []

    class Counting(Proxy):
        def _pyroInvoke(self, methodname: str, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
            calls.append(methodname)
            return super()._pyroInvoke(methodname, *args, **kwargs)

    with _proxy(uri, cfg, cls=Counting) as proxy:
        for _ in range(5):
            assert proxy.add(1, 2) == 3
        assert calls.count("add") == 5


def test_a_vanished_daemon_fails_a_lane_call_and_releases_the_proxy() -> None:
    with serving("thread", "tcp") as (daemon, _service, uri, cfg):
        proxy = _proxy(uri, cfg)
        proxy._pyroMaxRetries = 0
        proxy.add(0, 0)
        proxy.add(0, 0)
        assert callable(proxy._lane)
        for conn in daemon.opened:
            conn.sock.shutdown(socket.SHUT_RDWR)  # the daemon's end goes away between two calls
        with pytest.raises(errors.ConnectionClosedError):
            proxy.add(1, 2)
        assert proxy._pyroConnection is None and proxy._lane is None
        assert proxy.add(1, 2) == 3  # the next call reconnects


def test_a_lane_call_times_out_like_any_call() -> None:
    with serving("thread", "tcp") as (_daemon, _service, uri, cfg):
        pcfg = cfg.copy()
        pcfg.COMMTIMEOUT = 0.3
        proxy = Proxy(uri, config=pcfg)
        proxy._pyroMaxRetries = 0
        proxy.add(0, 0)
        proxy.add(0, 0)
        assert callable(proxy._lane)
        with pytest.raises(errors.TimeoutError):
            proxy.sleep(1.5)
        assert proxy._pyroConnection is None and proxy._lane is None
        assert proxy.add(1, 2) == 3


def test_one_proxy_shared_by_threads(served: Any) -> None:
    _daemon, _service, uri, cfg = served
    with _proxy(uri, cfg) as proxy:
        proxy.add(0, 0)
        failures: list[Any] = []

        def worker(k: int) -> None:
            for i in range(200):
                if proxy.add(k, i) != k + i:
                    failures.append((k, i))

        threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert failures == []


# --- the daemon's serving lane ---------------------------------------------------------------------
def _requests(ser: Any) -> list[tuple[str, bytes]]:
    """(name, bytes sent in one send) for a set of requests after a handshake: each gets replies."""
    def call(method: str, vargs: Any, seq: int, flags: int = 0, ann: Any = None) -> bytes:
        return encode(MSG_INVOKE, ser.dumps_call("svc", method, vargs, {}), ser.serializer_id, flags, seq, ann)

    corr = {"CORR": b"0123456789abcdef"}
    return [
        ("plain", call("add", (1, 2), 1, ann=corr)),
        ("no correlation id", call("echo", ("x",), 2)),
        ("other annotations", call("context", (), 3, ann={"CORR": corr["CORR"], "XANN": b"v"})),
        ("unknown object", encode(MSG_INVOKE, ser.dumps_call("nobody", "add", (1, 2), {}), ser.serializer_id, 0, 4, corr)),
        ("private name", call("_private", (), 5, ann=corr)),
        ("unknown method", call("nope", (), 6, ann=corr)),
        ("two in one send", call("add", (1, 1), 7, ann=corr) + call("add", (2, 2), 8, ann=corr)),
        ("large", call("echo", ("L" * 100_000,), 9, ann=corr)),
        ("short correlation id", call("add", (5, 5), 10, ann={"CORR": b"short"})),
    ]


@pytest.mark.parametrize("kind", KINDS, ids=[f"{s}-{t}" for s, t in KINDS])
def test_serving_lane_replies_equal_the_general_path(kind: tuple[str, str]) -> None:
    replies = {}
    for daemon_class in (RecordingDaemon, LanelessDaemon):
        with serving(*kind, daemon_class) as (daemon, _service, _uri, cfg):
            ser = get_registry().serializer("serpent")(cfg)
            address = daemon.sock.getsockname()
            got = []
            with RawClient(address) as client:
                client.handshake(ser)
                client.send(_requests(ser)[0][1])  # the connection's second request: the lane is made now
                client.recv_msg()
                for name, data in _requests(ser):
                    client.send(data)
                    for _ in range(2 if name == "two in one send" else 1):
                        msg = client.recv_msg()
                        assert msg is not None, name
                        if msg.flags & FLAGS_EXCEPTION:  # the traceback names the code path: compare the rest
                            error = ser.loads(msg.data)
                            got.append((name, msg.type, msg.flags, msg.seq, type(error).__name__, str(error)))
                        else:
                            ann = dict(msg.annotations)
                            if name == "no correlation id":  # the daemon made one up
                                assert len(ann.pop("CORR")) == 16
                            got.append((name, msg.type, msg.flags, msg.seq, ann, bytes(msg.data)))
                assert client.is_open()
            lanes = [conn.lane for conn in daemon.opened]
            assert callable(lanes[0]) if daemon_class is RecordingDaemon else lanes == [False]
            replies[daemon_class] = got
    assert replies[RecordingDaemon] == replies[LanelessDaemon]


@pytest.mark.parametrize("kind", KINDS, ids=[f"{s}-{t}" for s, t in KINDS])
def test_serving_lane_leaves_a_call_split_over_two_sends_to_the_reader(kind: tuple[str, str]) -> None:
    with serving(*kind) as (daemon, _service, _uri, cfg):
        ser = get_registry().serializer("serpent")(cfg)
        with RawClient(daemon.sock.getsockname()) as client:
            client.handshake(ser)
            for seq in range(1, 4):
                data = encode(MSG_INVOKE, ser.dumps_call("svc", "add", (seq, 1), {}), ser.serializer_id, 0, seq)
                client.send(data[:10])
                assert client.is_open(0.05)
                client.send(data[10:])
                msg = client.recv_msg()
                assert msg is not None and msg.seq == seq and ser.loads(msg.data) == seq + 1


def test_serving_lane_closes_a_connection_on_a_bad_checksum_and_serves_on(served: Any) -> None:
    daemon, _service, uri, cfg = served
    ser = get_registry().serializer("serpent")(cfg)
    with RawClient(daemon.sock.getsockname()) as client:
        client.handshake(ser)
        for seq in (1, 2):
            client.invoke(ser, "svc", "add", (1, 2), seq=seq)
            assert client.recv_msg() is not None
        data = bytearray(encode(MSG_INVOKE, ser.dumps_call("svc", "add", (1, 2), {}), ser.serializer_id, 0, 3))
        data[22] ^= 0xFF  # the checksum
        client.send(bytes(data))
        client.expect_closed()
    with _proxy(uri, cfg) as proxy:
        assert proxy.add(1, 2) == 3
