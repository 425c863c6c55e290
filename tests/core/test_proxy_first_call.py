"""A new proxy's first call travels with the handshake (one send, one round trip) when that is safe.

The process remembers which plain methods an object exposed in its last handshake; a new proxy for the
same URI then sends CONNECT and the call together. These tests pin down that it happens, and that it
never changes what the user sees: a refused handshake never runs the call, an object replaced under the
same URI is answered from its current metadata, and the proxies that must not pipeline (oneway calls,
custom handshake validation) still connect first.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pyroplug import errors
from pyroplug.core import proxy as proxy_module
from pyroplug.core.config import Config
from pyroplug.core.daemon import Daemon
from pyroplug.core.expose import expose, oneway
from pyroplug.core.protocol import MSG_CONNECT, MSG_INVOKE
from pyroplug.core.proxy import Proxy
from pyroplug.core.transport import SocketConnection

pytestmark = pytest.mark.timeout(30)

# Pyro4's 24-byte header: tag, version, type, flags, seq, data size, serializer, annotations size, reserved, checksum
_HEADER = struct.Struct("!4sHHHHiHHHH")


@expose
class Counter:
    """Counts the calls that really ran."""

    def __init__(self) -> None:
        self.calls = 0

    def bump(self) -> int:
        self.calls += 1
        return self.calls

    @oneway
    def poke(self) -> None:
        self.calls += 1


@expose
class Other:
    def sub(self, a: int, b: int) -> int:
        return a - b


class GuardedDaemon(Daemon):
    """Refuses handshakes whose data is ``"deny"``."""

    def validateHandshake(self, conn: Any, data: Any) -> Any:  # noqa: N802
        if data == "deny":
            raise ValueError("denied")
        return super().validateHandshake(conn, data)


def _message_types(data: bytes) -> list[int]:
    """The message types in a buffer of whole Pyro messages."""
    types = []
    offset = 0
    while offset < len(data):
        _tag, _version, msgtype, _flags, _seq, size, _sid, ann_size, _reserved, _check = _HEADER.unpack_from(data, offset)
        types.append(msgtype)
        offset += _HEADER.size + size + ann_size
    return types


@pytest.fixture(params=["thread", "multiplex"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[GuardedDaemon, Counter, Any]]:
    config = Config()
    config.SERVERTYPE = request.param
    daemon = GuardedDaemon(host="127.0.0.1", config=config)
    counter = Counter()
    uri = daemon.register(counter, "counter")
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        yield daemon, counter, uri
    finally:
        daemon.shutdown()
        thread.join(5)


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every buffer proxies hand to their socket's ``sendall`` from now on (one entry per send)."""
    seen: list[bytes] = []
    init = SocketConnection.__init__

    def recording_init(self: SocketConnection, sock: Any, keep_open: bool = False) -> None:
        init(self, sock, keep_open)
        sendall = self._send

        def recording_sendall(data: Any) -> None:
            if not self.shutdown_on_close:  # a proxy's connection (the daemon in this process sends too)
                seen.append(bytes(data))
            sendall(data)

        self._send = recording_sendall  # type: ignore[method-assign]
        if self.plain_send is not None:
            self.plain_send = recording_sendall

    monkeypatch.setattr(SocketConnection, "__init__", recording_init)
    return seen


def test_first_call_of_a_new_proxy_carries_the_handshake(served: Any, sends: list[bytes]) -> None:
    _daemon, counter, uri = served
    with Proxy(uri) as first:
        assert first.bump() == 1  # learns the metadata: handshake, then the call
    assert [_message_types(s) for s in sends] == [[MSG_CONNECT], [MSG_INVOKE]]
    sends.clear()
    with Proxy(uri) as second:
        assert second.bump() == 2
        assert second.bump() == 3
    assert [_message_types(s) for s in sends] == [[MSG_CONNECT, MSG_INVOKE], [MSG_INVOKE]]
    assert counter.calls == 3


def test_released_proxy_reconnects_with_its_next_call(served: Any, sends: list[bytes]) -> None:
    _daemon, _counter, uri = served
    proxy = Proxy(uri)
    assert proxy.bump() == 1
    proxy._pyroRelease()
    sends.clear()
    assert proxy.bump() == 2
    proxy._pyroRelease()
    assert [_message_types(s) for s in sends] == [[MSG_CONNECT, MSG_INVOKE]]


def test_refused_handshake_never_runs_the_call_sent_with_it(served: Any) -> None:
    _daemon, _counter, uri = served
    with Proxy(uri) as known:
        assert known.bump() == 1
    refused = Proxy(uri)
    refused._pyroHandshake = "deny"
    with pytest.raises(errors.CommunicationError, match="rejected: denied"):
        refused.bump()
    assert refused._pyroConnection is None
    with Proxy(uri) as check:
        assert check.bump() == 2  # the refused call never ran


def test_oneway_and_validating_proxies_connect_first(served: Any, sends: list[bytes]) -> None:
    _daemon, _counter, uri = served
    with Proxy(uri) as known:
        known.bump()

    class Validating(Proxy):
        def _pyroValidateHandshake(self, response: Any) -> None:  # noqa: N802
            assert response == "hello"

    sends.clear()
    with Validating(uri) as validating:
        assert validating.bump() == 2
    assert [_message_types(s) for s in sends] == [[MSG_CONNECT], [MSG_INVOKE]]
    sends.clear()
    with Proxy(uri) as proxy:
        proxy._pyroGetMetadata()
        proxy._pyroRelease()
        proxy.poke()  # oneway: no reply to wait for, so the handshake is answered first
        assert proxy.bump() == 4
    assert [_message_types(s) for s in sends][-3:] == [[MSG_CONNECT], [MSG_INVOKE], [MSG_INVOKE]]


def test_object_replaced_under_a_known_uri(served: Any) -> None:
    daemon, _counter, uri = served
    with Proxy(uri) as known:
        known.bump()
    daemon.unregister("counter")
    daemon.register(Other(), "counter")
    with Proxy(uri) as stale:
        with pytest.raises(AttributeError):
            stale.bump()  # the current metadata (and the daemon) know no bump any more
        assert stale.sub(5, 3) == 2  # the same connection keeps working
    with Proxy(uri) as fresh:
        with pytest.raises(AttributeError):
            fresh.bump()


def test_serialization_error_before_connecting_leaves_no_connection(served: Any) -> None:
    _daemon, _counter, uri = served
    with Proxy(uri) as known:
        known.bump()
    proxy = Proxy(uri)
    proxy._pyroSerializer = "json"
    with pytest.raises(errors.SerializeError):
        proxy._pyroInvoke("bump", (threading.Lock(),), {})
    assert proxy._pyroConnection is None
    assert proxy.bump() == 2
    proxy._pyroRelease()


def test_the_known_methods_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_module, "_known_methods", {})
    monkeypatch.setattr(proxy_module, "_KNOWN_METHODS_MAX", 3)
    meta = {"methods": ["a", "b"], "oneway": ["b"], "attrs": []}
    for i in range(10):
        proxy_module._remember_methods((proxy_module.URI(f"PYRO:obj{i}@localhost:{9000 + i}"),), meta)
        assert len(proxy_module._known_methods) <= 3
    assert set(proxy_module._known_methods.values()) == {frozenset({"a"})}


# --- handshakes decoded once per process ----------------------------------------------------------


def test_a_handshake_answer_is_decoded_once_and_each_proxy_gets_its_own_sets(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _daemon, _counter, uri = served
    monkeypatch.setattr(proxy_module, "_connect_answers", {})
    with Proxy(uri) as first:
        first.bump()
        assert len(proxy_module._connect_answers) == 1
        first._pyroOneway.add("bump")  # Pyro4 users mark methods oneway by hand like this
    with Proxy(uri) as second:
        assert second.bump() == 2  # not oneway: the first proxy's change stays its own
        assert second._pyroOneway == {"poke"}
        assert second._pyroMethods == {"bump", "poke"}
        assert second._pyroMethods is not first._pyroMethods
    assert len(proxy_module._connect_answers) == 1


def test_the_connect_answers_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_module, "_connect_answers", {})
    monkeypatch.setattr(proxy_module, "_CONNECT_ANSWERS_MAX", 3)
    ser = proxy_module.get_registry().serializer("marshal")(Config())
    for i in range(10):
        data = ser.dumps({"handshake": "hello", "meta": {"methods": [f"m{i}"], "oneway": [], "attrs": []}})
        response, members = proxy_module._connect_answer(ser, ser.serializer_id, data)
        assert response == "hello" and members.plain == {f"m{i}"}
        assert len(proxy_module._connect_answers) <= 3


def test_a_mutable_handshake_response_is_not_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_module, "_connect_answers", {})
    ser = proxy_module.get_registry().serializer("marshal")(Config())
    data = ser.dumps({"handshake": {"token": [1]}, "meta": {"methods": ["m"], "oneway": [], "attrs": []}})
    first, _ = proxy_module._connect_answer(ser, ser.serializer_id, data)
    first["token"].append(2)
    second, _ = proxy_module._connect_answer(ser, ser.serializer_id, data)
    assert second == {"token": [1]}
    assert proxy_module._connect_answers == {}


@pytest.mark.parametrize("reply", [{"handshake": "hello"}, {"handshake": "hello", "meta": {"methods": []}}, ["x"]])
def test_a_malformed_handshake_answer_is_a_protocol_error(reply: Any) -> None:
    """A server answering CONNECT with META_ON_CONNECT but no usable metadata."""
    from pyroplug.core import protocol

    listener = socket.create_server(("127.0.0.1", 0))
    ser = proxy_module.get_registry().serializer("marshal")(Config())

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(protocol.encode(protocol.MSG_CONNECTOK, ser.dumps(reply), ser.serializer_id,
                                         protocol.FLAGS_META_ON_CONNECT))
            conn.recv(1)

    server = threading.Thread(target=answer, daemon=True)
    server.start()
    try:
        proxy = Proxy(f"PYRO:thing@127.0.0.1:{listener.getsockname()[1]}")
        proxy._pyroSerializer = "marshal"
        with pytest.raises(errors.ProtocolError):
            proxy._pyroBind()
        proxy._pyroRelease()
    finally:
        server.join(5)
        listener.close()


class RecordingDaemon(Daemon):
    """Keeps every handshake value it is given, and changes it (a validateHandshake may)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[Any] = []

    def validateHandshake(self, conn: Any, data: Any) -> Any:  # noqa: N802
        self.seen.append(data)
        if isinstance(data, dict):
            data["changed"] = True
        return super().validateHandshake(conn, data)


@pytest.mark.parametrize("handshake", ["hello", {"user": "me"}])
def test_the_daemon_decodes_mutable_handshakes_afresh(handshake: Any) -> None:
    daemon = RecordingDaemon(host="127.0.0.1")
    uri = daemon.register(Counter, "counter")
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        for _ in range(3):
            with Proxy(uri) as proxy:
                proxy._pyroHandshake = handshake
                proxy.bump()
        assert len(daemon.seen) == 3
        if isinstance(handshake, dict):
            assert all(seen == {"user": "me", "changed": True} for seen in daemon.seen)
            assert len({id(seen) for seen in daemon.seen}) == 3
        else:
            assert daemon.seen == ["hello"] * 3
            assert len(daemon._hellos) == 1
    finally:
        daemon.shutdown()
        thread.join(5)
        daemon.close()


def test_an_encoded_handshake_is_reused_only_for_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_module, "_hellos", {})
    config = Config()
    config.SERIALIZER = "pickle"
    uri = proxy_module.URI("PYRO:thing@127.0.0.1:9")

    def hello(**settings: Any) -> bytes:
        proxy = Proxy(uri, config=config)
        for name, value in settings.items():
            setattr(proxy, name, value)
        proxy._prepare()
        return proxy._hello(uri)

    first = hello()
    assert hello() is first  # the same settings: encoded once
    assert hello(_pyroHandshake="other") != first
    config.PICKLE_PROTOCOL_VERSION = 2
    assert hello() != first  # another pickle protocol, other bytes
    assert hello(_pyroHandshake={"mutable": True}) is not hello(_pyroHandshake={"mutable": True})
    assert len(proxy_module._hellos) == 3
