"""A call sent together with the handshake (as pyroplug proxies do) is answered right behind CONNECTOK.

Over real TCP sockets, for both server types: the two answers leave the daemon in one send (one segment
on loopback, so one read gets both), a oneway or failing call still gets its CONNECTOK, a refused
handshake never runs the call, LOGWIRE still sees everything, and the cached handshake metadata
follows the object's class.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pyroplug.core.config import Config
from pyroplug.core.daemon import Daemon
from pyroplug.core.expose import expose, oneway
from pyroplug.core.protocol import (
    FLAGS_EXCEPTION,
    FLAGS_META_ON_CONNECT,
    FLAGS_ONEWAY,
    MSG_CONNECT,
    MSG_CONNECTFAIL,
    MSG_CONNECTOK,
    MSG_INVOKE,
    MSG_RESULT,
    MessageReader,
    encode,
)
from pyroplug.plugins.serializers.marshal import MarshalSerializer
from tests.e2e.rawwire import RawClient

pytestmark = pytest.mark.timeout(30)


@expose
class Box:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def put(self, item: Any) -> int:
        self.items.append(item)
        return len(self.items)

    @oneway
    def drop(self, item: Any) -> None:
        self.items.append(item)

    def fail(self) -> None:
        raise ValueError("no")


@expose
class Wider(Box):
    def extra(self) -> str:
        return "extra"


class PickyDaemon(Daemon):
    def validateHandshake(self, conn: Any, data: Any) -> Any:  # noqa: N802
        if data != "hello":
            raise ValueError("go away")
        return "welcome"


@pytest.fixture(params=["thread", "multiplex"])
def daemon(request: pytest.FixtureRequest) -> Iterator[PickyDaemon]:
    config = Config()
    config.SERVERTYPE = request.param
    d = PickyDaemon(host="127.0.0.1", config=config)
    d.register(Box(), "box")
    thread = threading.Thread(target=d.requestLoop, daemon=True)
    thread.start()
    try:
        yield d
    finally:
        d.shutdown()
        thread.join(5)


SER = MarshalSerializer(Config())


def _hello(handshake: str = "hello", obj: str = "box") -> bytes:
    data = SER.dumps({"handshake": handshake, "object": obj})
    return encode(MSG_CONNECT, data, SER.serializer_id, FLAGS_META_ON_CONNECT, 0)


def _call(method: str, *args: Any, flags: int = 0, seq: int = 1) -> bytes:
    return encode(MSG_INVOKE, SER.dumps_call("box", method, args, {}), SER.serializer_id, flags, seq)


def _address(d: Daemon) -> tuple[str, int]:
    host, _, port = d.locationStr.rpartition(":")
    return host, int(port)


def _messages(data: bytes) -> list[Any]:
    reader = MessageReader()
    buf = reader.get_buffer()
    messages = []
    view = memoryview(data)
    while view:
        buf = reader.get_buffer()
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        reader.buffer_updated(n)
        view = view[n:]
        while (msg := reader.next_message()) is not None:
            messages.append(msg)
    return messages


def _read_all(client: RawClient, count: int) -> list[Any]:
    messages: list[Any] = []
    while len(messages) < count:
        msg = client.recv_msg()
        assert msg is not None, f"connection closed after {messages}"
        messages.append(msg)
    return messages


def test_both_answers_arrive_in_one_read(daemon: PickyDaemon) -> None:
    client = RawClient(_address(daemon))
    try:
        client.send(_hello() + _call("put", "a"))
        first_read = client.sock.recv(65536)  # one send by the daemon: one loopback segment
        ok, result = _messages(first_read)
        assert (ok.type, result.type, result.seq) == (MSG_CONNECTOK, MSG_RESULT, 1)
        assert SER.loads(ok.data)["handshake"] == "welcome"
        assert SER.loads(result.data) == 1
        client.send(_call("put", "b", seq=2))  # the connection goes on as usual
        assert SER.loads(_read_all(client, 1)[0].data) == 2
    finally:
        client.close()


def test_oneway_or_failing_call_with_the_handshake(daemon: PickyDaemon) -> None:
    client = RawClient(_address(daemon))
    try:
        client.send(_hello() + _call("drop", "x", flags=FLAGS_ONEWAY) + _call("fail", seq=2))
        ok, failed = _read_all(client, 2)
        assert ok.type == MSG_CONNECTOK
        assert failed.type == MSG_RESULT and failed.flags & FLAGS_EXCEPTION
    finally:
        client.close()
    assert "x" in daemon.objectsById["box"].items


def test_refused_handshake_never_runs_the_call(daemon: PickyDaemon) -> None:
    client = RawClient(_address(daemon))
    try:
        client.send(_hello("intruder") + _call("put", "sneaky"))
        (refused,) = _read_all(client, 1)
        assert refused.type == MSG_CONNECTFAIL
        assert client.recv_msg() is None  # then the daemon closed the connection
    finally:
        client.close()
    assert daemon.objectsById["box"].items == []


def test_logwire_logs_each_answer(daemon: PickyDaemon, caplog: pytest.LogCaptureFixture) -> None:
    daemon.config.LOGWIRE = True
    caplog.set_level(logging.DEBUG, logger="pyroplug.wire")
    client = RawClient(_address(daemon))
    try:
        client.send(_hello() + _call("put", "a"))
        ok, result = _read_all(client, 2)
        assert (ok.type, result.type) == (MSG_CONNECTOK, MSG_RESULT)
        client.send(_call("put", "b", seq=2))
        assert SER.loads(_read_all(client, 1)[0].data) == 2
    finally:
        client.close()
    sent = [r.getMessage() for r in caplog.records if "wiredata sending" in r.getMessage()]
    assert [f"msgtype={t}" in line for t, line in zip((MSG_CONNECTOK, MSG_RESULT, MSG_RESULT), sent, strict=True)] == [True] * 3


def test_cached_handshake_metadata_follows_the_class(daemon: PickyDaemon) -> None:
    def methods() -> set[str]:
        client = RawClient(_address(daemon))
        try:
            client.send(_hello())
            (ok,) = _read_all(client, 1)
            return set(SER.loads(ok.data)["meta"]["methods"])
        finally:
            client.close()

    assert methods() == {"put", "drop", "fail"} == methods()
    daemon.unregister("box")
    daemon.register(Wider(), "box")
    assert methods() == {"put", "drop", "fail", "extra"}
