"""COMPRESSION: zlib on payloads of at least 200 bytes when that makes them smaller, flag 0x02,
receivers decompress by the flag alone; compressed bombs are bounded by MAX_MESSAGE_SIZE."""

from __future__ import annotations

import os
import socket
import threading
import zlib

import pytest

from pyroplug.core import errors, protocol
from pyroplug.core.protocol import (
    FLAGS_COMPRESSED,
    FLAGS_META_ON_CONNECT,
    MSG_CONNECT,
    MSG_CONNECTOK,
    MSG_INVOKE,
    MSG_RESULT,
    MessageReader,
)
from tests.security.support import (
    MARSHAL_ID,
    RawClient,
    Tap,
    handshake,
    marshal_dumps,
    proxy,
    serving,
    wait_until,
)


# ---------------------------------------------------------------- the codec (unit)
@pytest.mark.parametrize(
    ("data", "compressed"),
    [
        (b"a" * 199, False),  # below the threshold
        (b"a" * 200, True),  # at the threshold, compressible
        (os.urandom(4096), False),  # incompressible: sent as is
    ],
    ids=["199-bytes", "200-bytes", "random"],
)
def test_threshold_and_only_when_smaller(data: bytes, compressed: bool) -> None:
    wire = protocol.encode(MSG_INVOKE, data, MARSHAL_ID, compress=True)
    _msgtype, flags, _seq, size, _ser, _ann = protocol.parse_header(wire[: protocol.HEADER_SIZE])
    assert bool(flags & FLAGS_COMPRESSED) is compressed
    assert (size < len(data)) is compressed
    reader = MessageReader()  # a receiver decompresses by the flag alone: it has no COMPRESSION setting
    reader.feed(wire)
    msg = reader.next_message()
    assert msg is not None and bytes(msg.data) == data and not msg.flags & FLAGS_COMPRESSED


def test_annotations_are_never_compressed() -> None:
    ann = {"XTRA": b"q" * 300}
    wire = protocol.encode(MSG_INVOKE, b"p" * 1000, MARSHAL_ID, annotations=ann, compress=True)
    assert b"XTRA" + (300).to_bytes(2, "big") + b"q" * 300 in wire


# ---------------------------------------------------------------- end to end, both directions
def _flags(headers: list[tuple[int, int, int, int]], msgtype: int) -> list[bool]:
    return [bool(flags & FLAGS_COMPRESSED) for t, flags, _ser, _size in headers if t == msgtype]


@pytest.mark.parametrize(("client_on", "daemon_on"), [(True, False), (False, True), (True, True)],
                         ids=["client-compresses", "daemon-compresses", "both"])
def test_compression_on_the_wire(servertype: str, client_on: bool, daemon_on: bool) -> None:
    text = "compress me " * 1000
    with serving(servertype, COMPRESSION=daemon_on) as served:
        with Tap((served.uri.host, served.uri.port)) as tap:
            with proxy(tap.uri_for(served.uri), COMPRESSION=client_on) as p:
                assert p.echo(text) == text
                assert p.add(1, 2) == 3  # small: never compressed
            assert wait_until(lambda: len(Tap.headers(tap.downstream)) >= 3)
            up, down = Tap.headers(tap.upstream), Tap.headers(tap.downstream)
    assert _flags(up, MSG_INVOKE) == [client_on, False]
    assert _flags(down, MSG_RESULT) == [daemon_on, False]
    big_invoke = [size for t, _f, _s, size in up if t == MSG_INVOKE][0]
    assert (big_invoke < len(text)) is client_on


# ---------------------------------------------------------------- compressed bombs
LIMIT = 1_000_000


def _bomb() -> bytes:
    """A marshal INVOKE payload that inflates to ~64 MB from ~64 KB."""
    payload = marshal_dumps(("recorder", "echo", ("\0" * 64_000_000,), {}))
    return zlib.compress(payload, 9)


def test_bomb_to_the_daemon_closes_without_reply(servertype: str) -> None:
    bomb = _bomb()
    assert len(bomb) < LIMIT
    with serving(servertype, MAX_MESSAGE_SIZE=LIMIT) as served:
        with RawClient.to(served.uri) as raw:
            reply = handshake(raw)
            assert reply is not None and reply.type == MSG_CONNECTOK
            raw.send_message(MSG_INVOKE, bomb, MARSHAL_ID, FLAGS_COMPRESSED, seq=1)
            assert raw.closed_by_peer()
        with RawClient.to(served.uri) as raw:  # the bomb as the CONNECT itself
            raw.send_message(MSG_CONNECT, bomb, MARSHAL_ID, FLAGS_COMPRESSED | FLAGS_META_ON_CONNECT)
            assert raw.closed_by_peer()
        assert served.calls() == []
        with proxy(served.uri) as p:
            assert p.add(1, 2) == 3


def test_bomb_from_a_daemon_is_refused_by_the_proxy() -> None:
    """A malicious 'daemon' answers a call with a compressed bomb: MessageTooLargeError, connection released."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    bomb = zlib.compress(marshal_dumps("\0" * 64_000_000), 9)

    def fake_daemon() -> None:
        conn, _ = listener.accept()
        with conn:
            reader = MessageReader()
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                reader.feed(data)
                msg = reader.next_message()
                while msg is not None:
                    if msg.type == MSG_CONNECT:
                        conn.sendall(protocol.encode(MSG_CONNECTOK, marshal_dumps("hello"), MARSHAL_ID, 0, msg.seq))
                    else:
                        conn.sendall(protocol.encode(MSG_RESULT, bomb, MARSHAL_ID, FLAGS_COMPRESSED, msg.seq))
                    msg = reader.next_message()

    thread = threading.Thread(target=fake_daemon, daemon=True)
    thread.start()
    try:
        p = proxy(f"PYRO:thing@127.0.0.1:{port}", METADATA=False, SERIALIZER="marshal", MAX_MESSAGE_SIZE=LIMIT)
        with p, pytest.raises(errors.MessageTooLargeError, match="decompressed message exceeds max size"):
            p.anything()
        assert p._pyroConnection is None
    finally:
        listener.close()
        thread.join(10)
