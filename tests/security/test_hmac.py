"""HMAC message authentication: keys on proxies and daemons, every message signed and verified, the
handshake's CONNECTFAIL answers, and refusals that never reach user code (both server types)."""

from __future__ import annotations

import zlib

import pytest

from pyroplug.core import errors, protocol
from pyroplug.core.protocol import (
    FLAGS_COMPRESSED,
    MSG_CONNECT,
    MSG_CONNECTFAIL,
    MSG_CONNECTOK,
    MSG_INVOKE,
    MSG_PING,
    MSG_RESULT,
    MessageReader,
)
from tests.security.support import (
    KEY,
    KEY_BYTES,
    MARSHAL_ID,
    RawClient,
    connect_payload,
    handshake,
    invoke_payload,
    marshal_loads,
    proxy,
    serving,
    wait_until,
)


# ---------------------------------------------------------------- keys
def test_key_properties_encode_str_as_utf8(servertype: str) -> None:
    with serving(servertype) as served:
        daemon = served.daemon
        daemon._pyroHmacKey = KEY
        assert daemon._pyroHmacKey == KEY_BYTES
        daemon._pyroHmacKey = b"raw"
        assert daemon._pyroHmacKey == b"raw"
        daemon._pyroHmacKey = None
        assert daemon._pyroHmacKey is None
    p = proxy(served.uri, hmac=KEY)
    assert p._pyroHmacKey == KEY_BYTES
    p._pyroHmacKey = None
    assert p._pyroHmacKey is None


# ---------------------------------------------------------------- the reader's deferred mode (unit)
def _signed(msgtype: int, data: bytes, key: bytes | None, compress: bool = False, **kwargs: object) -> bytes:
    return protocol.encode(msgtype, data, MARSHAL_ID, hmac_key=key, compress=compress, **kwargs)  # type: ignore[arg-type]


def test_deferred_reader_hands_out_unverified_then_authenticates() -> None:
    reader = MessageReader(0, b"key")
    reader.defer_hmac = True
    payload = b"z" * 1000
    reader.feed(_signed(MSG_CONNECT, payload, b"key", compress=True))
    msg = reader.next_message()
    assert msg is not None
    assert msg.flags & FLAGS_COMPRESSED and bytes(msg.data) != payload  # untouched: still compressed
    assert reader.authenticate(msg) is msg
    assert bytes(msg.data) == payload and not msg.flags & FLAGS_COMPRESSED


@pytest.mark.parametrize(
    ("sender_key", "reader_key", "message"),
    [
        (b"wrong", b"key", "message hmac mismatch"),
        (None, b"key", "hmac key config not symmetric"),
        (b"key", None, "hmac key config not symmetric"),
    ],
)
def test_deferred_reader_authenticate_raises(sender_key: bytes | None, reader_key: bytes | None, message: str) -> None:
    reader = MessageReader(0, reader_key)
    reader.defer_hmac = True
    reader.feed(_signed(MSG_CONNECT, b"payload", sender_key))
    msg = reader.next_message()
    assert msg is not None  # handed out, not raised
    with pytest.raises(errors.SecurityError, match=message):
        reader.authenticate(msg)


def test_deferred_reader_verifies_before_decompressing() -> None:
    """A compressed bomb with a bad HMAC is refused as unauthenticated, never inflated."""
    bomb = zlib.compress(b"\0" * 50_000_000)  # ~49 KB on the wire
    reader = MessageReader(100_000, b"key")
    reader.defer_hmac = True
    reader.feed(protocol.encode(MSG_CONNECT, bomb, MARSHAL_ID, FLAGS_COMPRESSED, hmac_key=b"wrong"))
    msg = reader.next_message()
    assert msg is not None
    with pytest.raises(errors.SecurityError, match="mismatch"):
        reader.authenticate(msg)
    good = MessageReader(100_000, b"key")
    good.defer_hmac = True
    good.feed(protocol.encode(MSG_CONNECT, bomb, MARSHAL_ID, FLAGS_COMPRESSED, hmac_key=b"key"))
    msg = good.next_message()
    assert msg is not None
    with pytest.raises(errors.MessageTooLargeError):
        good.authenticate(msg)


def test_deferred_reader_without_keys_decodes_normally() -> None:
    reader = MessageReader()
    reader.defer_hmac = True
    reader.feed(_signed(MSG_CONNECT, b"y" * 500, None, compress=True))
    msg = reader.next_message()
    assert msg is not None and bytes(msg.data) == b"y" * 500 and not msg.flags & FLAGS_COMPRESSED
    assert bytes(reader.authenticate(msg).data) == b"y" * 500


def test_big_deferred_message() -> None:
    """Messages larger than the shared buffer take the dedicated-buffer path: deferred there too."""
    reader = MessageReader(0, b"key")
    reader.defer_hmac = True
    data = bytes(range(256)) * 1024  # 256 KiB, incompressible-ish
    wire = _signed(MSG_INVOKE, data, b"other")
    for i in range(0, len(wire), 50_000):
        reader.feed(wire[i:i + 50_000])
    msg = reader.next_message()
    assert msg is not None
    with pytest.raises(errors.SecurityError):
        reader.authenticate(msg)


# ---------------------------------------------------------------- end to end
def test_same_key_works_str_and_bytes(servertype: str) -> None:
    with serving(servertype, hmac=KEY) as served:
        with proxy(served.uri, hmac=KEY_BYTES) as p:  # bytes on one side, the str on the other: the same key
            assert p.add(1, 2) == 3
            assert p.echo("x" * 100_000) == "x" * 100_000
            with pytest.raises(ValueError, match="boom"):
                p.fail("boom")
            assert list(p.count(3)) == [0, 1, 2]  # stream items fetched from Pyro.Daemon: signed too
        with proxy(served.counted_uri, hmac=KEY) as p:
            assert p.ping() == "pong"


@pytest.mark.parametrize(
    ("daemon_key", "client_key", "reason"),
    [
        (KEY, "wrong key", "message hmac mismatch"),
        (KEY, None, "hmac key config not symmetric"),
        (None, KEY, "hmac key config not symmetric"),
    ],
    ids=["wrong-key", "client-without-key", "daemon-without-key"],
)
def test_key_problems_refused_before_user_code(servertype: str, daemon_key: str | None, client_key: str | None,
                                               reason: str) -> None:
    with serving(servertype, hmac=daemon_key) as served:
        with proxy(served.uri, hmac=client_key) as p:
            with pytest.raises(errors.CommunicationError, match=reason) as info:
                p.add(1, 2)
            assert isinstance(info.value.__cause__, errors.SecurityError)  # as Pyro4 4.82 chains it
            assert str(info.value).startswith(f"cannot connect to {served.uri.location}: ")
            assert p._pyroConnection is None
        assert served.log == []  # not even validateHandshake ran
        with proxy(served.uri, hmac=daemon_key) as p:  # the daemon still serves good clients
            assert p.add(2, 2) == 4


def test_connectfail_for_a_wrongly_signed_connect(servertype: str) -> None:
    """The daemon answers CONNECTFAIL with the SecurityError text: marshal, seq 0, signed with its key."""
    with serving(servertype, hmac=KEY) as served:
        with RawClient.to(served.uri, hmac_key=KEY_BYTES) as raw:  # its reader verifies the reply's HMAC
            raw.send_message(MSG_CONNECT, connect_payload(), MARSHAL_ID, seq=77, hmac_key=b"not the key")
            reply = raw.receive()
            assert reply is not None
            assert (reply.type, reply.serializer_id, reply.seq) == (MSG_CONNECTFAIL, MARSHAL_ID, 0)
            assert marshal_loads(reply.data) == "message hmac mismatch"
            assert reply.annotations["HMAC"] == protocol.hmac_digest(KEY_BYTES, reply.data, reply.annotations)
            assert "CORR" not in reply.annotations
            assert raw.closed_by_peer()
        with RawClient.to(served.uri, hmac_key=KEY_BYTES) as raw:  # a CONNECT without HMAC
            raw.send_message(MSG_CONNECT, connect_payload(), MARSHAL_ID, seq=5)
            reply = raw.receive()
            assert reply is not None and reply.type == MSG_CONNECTFAIL
            assert marshal_loads(reply.data) == "hmac key config not symmetric"
            assert raw.closed_by_peer()
        assert served.log == []


def test_connectfail_from_a_daemon_without_key(servertype: str) -> None:
    with serving(servertype) as served:
        with RawClient.to(served.uri) as raw:
            raw.send_message(MSG_CONNECT, connect_payload(), MARSHAL_ID, hmac_key=b"a key")
            reply = raw.receive()
            assert reply is not None and reply.type == MSG_CONNECTFAIL
            assert "HMAC" not in reply.annotations
            assert marshal_loads(reply.data) == "hmac key config not symmetric"
            assert raw.closed_by_peer()
        assert served.log == []


def test_every_reply_is_signed(servertype: str) -> None:
    """CONNECTOK, RESULT (normal and exception) and the PING reply carry a valid HMAC."""
    with serving(servertype, hmac=KEY) as served:
        with RawClient.to(served.uri, hmac_key=KEY_BYTES) as raw:  # the reader verifies every reply
            reply = handshake(raw, KEY_BYTES)
            assert reply is not None and reply.type == MSG_CONNECTOK
            assert "HMAC" in reply.annotations
            raw.send_message(MSG_INVOKE, invoke_payload("recorder", "add", 20, 22), seq=1, hmac_key=KEY_BYTES)
            reply = raw.receive()
            assert reply is not None and reply.type == MSG_RESULT and marshal_loads(reply.data) == 42
            raw.send_message(MSG_INVOKE, invoke_payload("recorder", "fail", "x"), seq=2, hmac_key=KEY_BYTES)
            reply = raw.receive()
            assert reply is not None and reply.type == MSG_RESULT and reply.flags & protocol.FLAGS_EXCEPTION
            raw.send_message(MSG_PING, b"ping", 42, seq=3, hmac_key=KEY_BYTES)
            reply = raw.receive()
            assert reply is not None and (reply.type, bytes(reply.data), reply.seq) == (MSG_PING, b"pong", 3)
            assert reply.annotations["HMAC"] == protocol.hmac_digest(KEY_BYTES, b"pong", reply.annotations)


@pytest.mark.parametrize("bad", ["wrong-key", "unsigned"])
@pytest.mark.parametrize("msgtype", [MSG_INVOKE, MSG_PING])
def test_bad_hmac_after_the_handshake_closes_without_reply(servertype: str, bad: str, msgtype: int) -> None:
    with serving(servertype, hmac=KEY) as served:
        with RawClient.to(served.uri, hmac_key=KEY_BYTES) as raw:
            reply = handshake(raw, KEY_BYTES)
            assert reply is not None and reply.type == MSG_CONNECTOK
            key = b"wrong" if bad == "wrong-key" else None
            raw.send_message(msgtype, invoke_payload("recorder", "add", 1, 1), seq=1, hmac_key=key)
            assert raw.closed_by_peer()
        assert served.calls() == []
        assert wait_until(lambda: len(served.daemon.disconnects) == 1)


def test_compressed_connect_with_hmac(servertype: str) -> None:
    """A CONNECT large enough to be compressed is verified over its compressed bytes, then inflated."""
    with serving(servertype, hmac=KEY, COMPRESSION=True) as served:
        with proxy(served.uri, hmac=KEY, COMPRESSION=True) as p:
            p._pyroHandshake = {"token": "t" * 2000}
            assert p.echo("y" * 5000) == "y" * 5000
        assert served.log[0] == ("handshake", {"token": "t" * 2000})


@pytest.mark.parametrize("reply_key", [None, b"forged"], ids=["unsigned", "forged"])
def test_forged_result_releases_the_proxy(reply_key: bytes | None) -> None:
    """A 'daemon' that answers the handshake correctly, then a call with a badly signed RESULT: the proxy
    raises SecurityError and drops the connection (it can no longer trust what arrives on it)."""
    import socket
    import threading

    from tests.security.support import marshal_dumps

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def fake_daemon() -> None:
        conn, _ = listener.accept()
        with conn:
            reader = MessageReader(0, KEY_BYTES)
            while data := conn.recv(65536):
                reader.feed(data)
                while (msg := reader.next_message()) is not None:
                    if msg.type == MSG_CONNECT:
                        reply = protocol.encode(MSG_CONNECTOK, marshal_dumps("hello"), MARSHAL_ID, 0, msg.seq,
                                                hmac_key=KEY_BYTES)
                    else:
                        reply = protocol.encode(MSG_RESULT, marshal_dumps(42), MARSHAL_ID, 0, msg.seq,
                                                hmac_key=reply_key)
                    conn.sendall(reply)

    thread = threading.Thread(target=fake_daemon, daemon=True)
    thread.start()
    try:
        p = proxy(f"PYRO:thing@127.0.0.1:{port}", hmac=KEY, METADATA=False, SERIALIZER="marshal")
        with p:
            with pytest.raises(errors.SecurityError):
                p.anything()
            assert p._pyroConnection is None
    finally:
        listener.close()
        thread.join(10)
