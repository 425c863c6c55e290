"""A new proxy's first call: the daemon's two replies (CONNECTOK, then the RESULT) taken in one read.

Over real TCP sockets, for both server types. When the handshake answer is one this process decoded
before and the call's reply is one plain RESULT, the proxy takes both at once (``Proxy._first_call``)
without the general handshake code; every other reply (an exception, extra annotations, a large result,
a fresh answer, HMAC) goes through ``Proxy._handshake_reply`` and the general reply path. Either way the
user sees the same results, metadata and response annotations.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pyroplug import errors
from pyroplug.core import proxy as proxy_module
from pyroplug.core.config import Config
from pyroplug.core.context import current_context
from pyroplug.core.daemon import Daemon
from pyroplug.core.expose import expose, oneway
from pyroplug.core.proxy import Proxy

pytestmark = pytest.mark.timeout(30)

VALUES: list[Any] = [None, 0, -7, 2**70, 1.5, "", "text ü", [1, [2, 3]], (1, "a"), {"k": [1, 2]}, True, "x" * 3000]


@expose
class Echo:
    def echo(self, value: Any) -> Any:
        return value

    def big(self, size: int) -> str:
        return "y" * size

    def fail(self) -> None:
        raise KeyError("missing")

    @oneway
    def note(self) -> None:
        pass


class AnnotatingDaemon(Daemon):
    """Adds an annotation of its own to every reply."""

    def annotations(self) -> dict[str, bytes]:
        return {"XTRA": b"extra"}


class DictDaemon(Daemon):
    """Answers every handshake with a dict (a mutable answer: never cached by the proxy)."""

    def validateHandshake(self, conn: Any, data: Any) -> Any:  # noqa: N802
        return {"hello": data}


def _serve(daemon_class: type[Daemon], servertype: str, **items: Any) -> tuple[Daemon, Any, threading.Thread]:
    config = Config()
    config.SERVERTYPE = servertype
    for name, value in items.items():
        setattr(config, name, value)
    daemon = daemon_class(host="127.0.0.1", config=config)
    uri = daemon.register(Echo(), "echo")
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    return daemon, uri, thread


@pytest.fixture(params=["thread", "multiplex"])
def servertype(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def general_replies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ``received`` argument of every Proxy._handshake_reply call (the general path) from now on."""
    seen: list[int] = []
    original = Proxy._handshake_reply

    def recording(self: Proxy, conn: Any, uri: Any, received: int = -1) -> Any:
        seen.append(received)
        return original(self, conn, uri, received)

    monkeypatch.setattr(Proxy, "_handshake_reply", recording)
    return seen


@pytest.fixture
def echo(servertype: str) -> Iterator[Any]:
    daemon, uri, thread = _serve(Daemon, servertype)
    try:
        with Proxy(uri) as learner:  # the first proxy learns the methods and the answer
            learner.echo(1)
        yield uri
    finally:
        daemon.shutdown()
        thread.join(5)
        daemon.close()


@pytest.mark.parametrize("serializer", ["serpent", "marshal"])
def test_plain_first_calls_take_both_replies_at_once(echo: Any, general_replies: list[int], serializer: str) -> None:
    with Proxy(echo) as learner:  # the answer in this serializer: decoded (by the general path) once per process
        learner._pyroSerializer = serializer
        learner.echo(0)
    general_replies.clear()
    for value in [*VALUES, b"", b"\x00\xffbytes"] if serializer == "marshal" else VALUES:
        current_context.response_annotations = {}
        with Proxy(echo) as proxy:
            proxy._pyroSerializer = serializer
            assert proxy.echo(value) == value
            assert proxy._pyroMethods == {"echo", "big", "fail", "note"}
            assert proxy._pyroOneway == {"note"}
            assert proxy._pyroAttrs == set()
            corr = current_context.response_annotations["CORR"]
            assert isinstance(corr, bytes) and len(corr) == 16
            assert proxy.echo([value]) == [value]  # the connection goes on
    assert general_replies == []


def test_first_call_results_match_a_connected_proxy(echo: Any) -> None:
    with Proxy(echo) as connected:
        connected._pyroBind()
        expected = [connected.echo(value) for value in VALUES]
    got = []
    for value in VALUES:
        with Proxy(echo) as fresh:
            got.append(fresh.echo(value))
    assert got == expected


def test_a_remote_exception_goes_the_general_way(echo: Any, general_replies: list[int]) -> None:
    with Proxy(echo) as proxy:
        with pytest.raises(KeyError) as caught:
            proxy.fail()
        assert "KeyError" in "".join(caught.value._pyroTraceback)  # type: ignore[attr-defined]
        assert proxy._pyroMethods == {"echo", "big", "fail", "note"}
        assert proxy.echo(5) == 5
    assert len(general_replies) == 1 and general_replies[0] > 0


def test_a_large_result_goes_the_general_way(echo: Any, general_replies: list[int]) -> None:
    with Proxy(echo) as proxy:
        assert proxy.big(300_000) == "y" * 300_000
    assert len(general_replies) == 1


def test_extra_reply_annotations_go_the_general_way(servertype: str, general_replies: list[int]) -> None:
    daemon, uri, thread = _serve(AnnotatingDaemon, servertype)
    try:
        with Proxy(uri) as learner:
            learner.echo(1)
        general_replies.clear()
        with Proxy(uri) as proxy:
            assert proxy.echo("a") == "a"
            assert current_context.response_annotations["XTRA"] == b"extra"
        assert len(general_replies) == 1
    finally:
        daemon.shutdown()
        thread.join(5)
        daemon.close()


def test_a_mutable_handshake_answer_goes_the_general_way(servertype: str, general_replies: list[int]) -> None:
    daemon, uri, thread = _serve(DictDaemon, servertype)
    try:
        for _ in range(3):
            with Proxy(uri) as proxy:
                assert proxy.echo("b") == "b"
        assert len(general_replies) == 3  # never in the table of decoded answers
    finally:
        daemon.shutdown()
        thread.join(5)
        daemon.close()


def test_hmac_proxies_go_the_general_way(servertype: str, general_replies: list[int]) -> None:
    daemon, uri, thread = _serve(Daemon, servertype)
    daemon._pyroHmacKey = b"secret"
    try:
        for _ in range(2):
            with Proxy(uri) as proxy:
                proxy._pyroHmacKey = b"secret"
                assert proxy.echo("c") == "c"
        assert len(general_replies) == 2
        with Proxy(uri) as wrong:
            wrong._pyroHmacKey = b"wrong"
            with pytest.raises(errors.CommunicationError):
                wrong.echo("d")
    finally:
        daemon.shutdown()
        thread.join(5)
        daemon.close()


def test_a_daemon_gone_after_the_handshake_is_a_clear_error() -> None:
    """A daemon that closes without answering: ConnectionClosedError naming the location."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    host, port = listener.getsockname()
    uri = f"PYRO:echo@{host}:{port}"
    proxy_module._remember((proxy_module.URI(uri),), frozenset({"echo"}))  # as if it had answered before

    def close_at_once() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    closer = threading.Thread(target=close_at_once, daemon=True)
    closer.start()
    try:
        with Proxy(uri) as proxy, pytest.raises(errors.ConnectionClosedError, match=f"cannot connect to {host}:{port}"):
            proxy.echo(1)
    finally:
        closer.join(5)
        listener.close()
