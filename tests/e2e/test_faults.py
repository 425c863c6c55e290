"""Bad input on the wire, end to end: every fault gets a clear error or a closed connection, never an outage.

Each test runs against a real Daemon for every server type (thread, multiplex) over TCP on
127.0.0.1 and over a unix socket. A proxy connects *before* the fault; after it, that proxy and a
brand-new one must both still get correct answers (:meth:`Served.assert_serving`). Faults a Proxy
cannot make are sent with a raw socket client (:mod:`tests.e2e.rawwire`).

What the daemon does, by fault:

* broken framing (garbage, wrong tag/version/checksum, negative size, overrunning annotations,
  unknown message type, bad compression, HMAC without a key, a call before the handshake, a message
  in a serializer the daemon does not accept): the connection is closed without a reply (the
  stream can't be trusted any more). Pyro4 answers some pre-handshake cases with CONNECTFAIL;
  pyroplug closes.
* a size over MAX_MESSAGE_SIZE: closed without a reply, before the body is read (Pyro4's
  MessageTooLargeError semantics). Without MAX_MESSAGE_SIZE a huge announced size is harmless:
  the body buffer grows only as bytes arrive.
* a CONNECT the daemon refuses (serializer not accepted, payload not a dict or not decodable):
  CONNECTFAIL carrying the reason as text, then close. The reason is marshal-encoded when the
  serializer was not accepted, else in the client's own serializer.
* an INVOKE whose payload does not deserialize or has the wrong call shape: a SerializeError
  reply, and the connection stays usable (framing is intact).
* a client that vanishes mid-message or mid-call, or never finishes its header: only its own
  connection is affected; COMMTIMEOUT closes stuck connections in bounded time.
"""

from __future__ import annotations

import logging
import marshal
import resource
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest

from pyroplug import errors
from pyroplug.core.protocol import (
    FLAGS_COMPRESSED,
    FLAGS_EXCEPTION,
    FLAGS_KEEPSERIALIZED,
    HEADER_SIZE,
    MSG_CONNECT,
    MSG_CONNECTFAIL,
    MSG_CONNECTOK,
    MSG_INVOKE,
    MSG_PING,
    MSG_RESULT,
    encode,
)
from tests.e2e.faultkit import KINDS, Served, served
from tests.e2e.rawwire import RawClient, header, tamper

pytestmark = pytest.mark.timeout(30)

_SERPENT = 1
_MARSHAL = 3
_PICKLE = 4  # a real serializer the daemon does not accept by default


@pytest.fixture(params=KINDS, ids=[f"{s}-{t}" for s, t in KINDS])
def kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def h(kind: tuple[str, str]) -> Iterator[Served]:
    with served(*kind) as running:
        yield running


def _connect_bytes(h: Served, **fields: int | bytes) -> bytes:
    """A valid serpent CONNECT, optionally with header fields replaced."""
    msg = encode(MSG_CONNECT, h.ser.dumps({"handshake": "hello"}), _SERPENT)
    return tamper(msg, **fields) if fields else msg


def _invoke_bytes(h: Served, method: str = "add", vargs: tuple = (1, 2), seq: int = 1, **fields: int) -> bytes:
    msg = encode(MSG_INVOKE, h.ser.dumps_call("svc", method, vargs, {}), _SERPENT, seq=seq)
    return tamper(msg, **fields) if fields else msg


def _overrunning_annotations(h: Served) -> bytes:
    """An INVOKE whose one annotation chunk claims 4,000 bytes inside 10 bytes of annotations."""
    msg = bytearray(encode(MSG_INVOKE, h.ser.dumps_call("svc", "add", (1, 2), {}), _SERPENT, seq=1,
                           annotations={"XTRA": b"abcd"}))
    struct.pack_into("!H", msg, HEADER_SIZE + 4, 4000)
    return bytes(msg)


def _truncated_chunk(h: Served) -> bytes:
    """Annotations 3 bytes long: too short for even one chunk header."""
    body = b"XTR" + h.ser.dumps_call("svc", "add", (1, 2), {})
    size = len(body) - 3
    return header(MSG_INVOKE, seq=1, size=size, ann_size=3) + body


def _non_ascii_key(h: Served) -> bytes:
    msg = bytearray(encode(MSG_INVOKE, h.ser.dumps_call("svc", "add", (1, 2), {}), _SERPENT, seq=1,
                           annotations={"XTRA": b"abcd"}))
    msg[HEADER_SIZE : HEADER_SIZE + 4] = b"\xff\xfe\xfd\xfc"
    return bytes(msg)


# --- faults that make the daemon close the connection without a reply ----------------------------
#: name -> (handshake first?, bytes to send, the reason the daemon logs when it closes the connection)
CLOSING_FAULTS: dict[str, tuple[bool, Callable[[Served], bytes], str]] = {
    "garbage-before-handshake": (False, lambda h: b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "invalid data or unsupported protocol version"),
    "garbage-after-handshake": (True, lambda h: bytes(range(256)) * 2,
        "invalid data or unsupported protocol version"),
    "wrong-tag": (False, lambda h: _connect_bytes(h, tag=b"PYRX"),
        "invalid data or unsupported protocol version"),
    "wrong-version": (False, lambda h: _connect_bytes(h, version=47),
        "invalid data or unsupported protocol version"),
    "wrong-version-after-handshake": (True, lambda h: _invoke_bytes(h, version=49),
        "invalid data or unsupported protocol version"),
    "wrong-checksum": (False, lambda h: _connect_bytes(h, checksum=0x1234),
        "header checksum mismatch"),
    "wrong-checksum-after-handshake": (True, lambda h: _invoke_bytes(h, checksum=0),
        "header checksum mismatch"),
    "negative-size": (True, lambda h: header(MSG_INVOKE, seq=1, size=-100) + b"x" * 32,
        "invalid data length -100"),
    "annotations-overrun": (True, _overrunning_annotations,
        "annotation chunk length overruns"),
    "annotations-truncated-chunk": (True, _truncated_chunk,
        "annotation chunk header truncated"),
    "annotation-key-not-ascii": (True, _non_ascii_key,
        "annotation key is not ASCII"),
    "invoke-before-handshake": (False, lambda h: _invoke_bytes(h),
        "invalid msg type 4 received before the handshake"),
    "ping-before-handshake": (False, lambda h: encode(MSG_PING, b"ping", _SERPENT),
        "invalid msg type 6 received before the handshake"),
    "result-before-handshake": (False, lambda h: encode(MSG_RESULT, b"None", _SERPENT),
        "invalid msg type 5 received before the handshake"),
    "unknown-type-before-handshake": (False, lambda h: header(99, size=0),
        "invalid msg type 99"),
    "unknown-type-after-handshake": (True, lambda h: header(99, seq=1, size=4) + b"None",
        "invalid msg type 99"),
    "zero-type-after-handshake": (True, lambda h: header(0, seq=1, size=0),
        "invalid msg type 0"),
    "result-after-handshake": (True, lambda h: encode(MSG_RESULT, b"None", _SERPENT, seq=1),
        "invalid msg type 5 received"),
    "connectok-after-handshake": (True, lambda h: encode(MSG_CONNECTOK, b"None", _SERPENT, seq=1),
        "invalid msg type 2 received"),
    "second-connect": (True, lambda h: _connect_bytes(h),
        "invalid msg type 1 received"),
    "invoke-unaccepted-serializer": (True, lambda h: _invoke_bytes(h, serializer_id=_PICKLE),
        "serializer that is not accepted: 4"),
    "invoke-unknown-serializer": (True, lambda h: _invoke_bytes(h, serializer_id=200),
        "serializer that is not accepted: 200"),
    "bad-compressed-payload": (True, lambda h: encode(MSG_INVOKE, b"not zlib at all", _SERPENT, FLAGS_COMPRESSED, 1),
        "invalid compressed payload"),
    "hmac-without-key": (True, lambda h: encode(MSG_INVOKE, h.ser.dumps_call("svc", "add", (1, 2), {}), _SERPENT,
                                                seq=1, hmac_key=b"a key the daemon does not have"),
        "hmac key config not symmetric"),
    "keepserialized-without-blbi": (True, lambda h: encode(MSG_INVOKE, h.ser.dumps_call("svc", "add", (1, 2), {}),
                                                           _SERPENT, FLAGS_KEEPSERIALIZED, 1),
        "without BLBI annotation"),
}


@pytest.mark.parametrize("fault", sorted(CLOSING_FAULTS))
def test_broken_framing_closes_only_that_connection(h: Served, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    handshake_first, make, reason = CLOSING_FAULTS[fault]
    caplog.set_level(logging.DEBUG, logger="pyroplug")
    client = h.handshaken() if handshake_first else h.raw()
    client.send(make(h))
    client.expect_closed(5)
    assert any(reason in record.getMessage() for record in caplog.records), (
        f"no log record says {reason!r}: {[r.getMessage() for r in caplog.records]}"
    )
    h.assert_serving()


def test_many_broken_clients_in_a_row(h: Served) -> None:
    """A burst of every closing fault, from parallel connections, still leaves the daemon serving."""
    clients = []
    for handshake_first, make, _reason in CLOSING_FAULTS.values():
        client = h.handshaken() if handshake_first else h.raw()
        client.send(make(h))
        clients.append(client)
    for client in clients:
        client.expect_closed(5)
    h.assert_serving()


# --- sizes --------------------------------------------------------------------------------------
def test_huge_size_without_max_message_size_is_harmless(h: Served) -> None:
    """A header announcing 2 GiB: the daemon waits for the body, allocating only as bytes arrive."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    liars = [h.handshaken() for _ in range(5)]
    for liar in liars:
        liar.send(header(MSG_INVOKE, seq=1, size=0x7FFFFFF0) + b"(" * 1000)
    h.assert_serving()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024, f"peak memory grew by {grown_kib} KiB for 5 lying headers"
    assert all(liar.is_open(0.05) for liar in liars)  # still waiting for the promised body: harmless
    for liar in liars:
        liar.close()
    h.assert_serving()


@pytest.mark.parametrize("handshake_first", [False, True], ids=["connect", "invoke"])
def test_size_over_max_message_size_closes_without_reply(kind: tuple[str, str], handshake_first: bool) -> None:
    with served(*kind, MAX_MESSAGE_SIZE=4096) as h:
        client = h.handshaken() if handshake_first else h.raw()
        msgtype = MSG_INVOKE if handshake_first else MSG_CONNECT
        client.send(header(msgtype, seq=1, size=5000) + b"x" * 100)  # refused from the header alone
        client.expect_closed(5)
        huge = h.handshaken()
        huge.send(header(MSG_INVOKE, seq=1, size=0x7FFFFFF0))
        huge.expect_closed(5)
        exact = h.handshaken()  # at the limit is fine
        payload = h.ser.dumps_call("svc", "echo", ("z" * 3000,), {})
        exact.send(encode(MSG_INVOKE, payload, _SERPENT, seq=7))
        reply = exact.recv_msg()
        assert reply is not None and reply.type == MSG_RESULT and reply.seq == 7
        assert h.ser.loads(reply.data) == "z" * 3000
        with h.proxy(MAX_MESSAGE_SIZE=0) as p:  # a proxy without the limit sends too much
            with pytest.raises(errors.ConnectionClosedError):
                p.echo("q" * 5000)
        h.assert_serving()


def test_result_over_max_message_size_is_reported(kind: tuple[str, str]) -> None:
    """The daemon refuses to send a too-large result: the caller gets MessageTooLargeError, not a hang-up."""
    with served(*kind, MAX_MESSAGE_SIZE=4096) as h:
        with h.proxy(MAX_MESSAGE_SIZE=0) as p:
            with pytest.raises(errors.MessageTooLargeError, match="max message size exceeded"):
                p.big_result(10_000)
            assert p.big_result(100) == "y" * 100
        client = h.handshaken()
        client.invoke(h.ser, "svc", "big_result", (10_000,), seq=3)
        reply = client.recv_msg()
        assert reply is not None and reply.flags & FLAGS_EXCEPTION and reply.seq == 3
        assert isinstance(h.ser.loads(reply.data), errors.MessageTooLargeError)
        client.invoke(h.ser, "svc", "add", (2, 3), seq=4)  # the same connection goes on
        reply = client.recv_msg()
        assert reply is not None and reply.seq == 4 and h.ser.loads(reply.data) == 5
        h.assert_serving()


# --- the handshake ------------------------------------------------------------------------------
@pytest.mark.parametrize("serializer_id", [_PICKLE, 200])
def test_connect_with_unaccepted_serializer_gets_marshal_connectfail(h: Served, serializer_id: int) -> None:
    client = h.raw()
    client.send(_connect_bytes(h, serializer_id=serializer_id))
    reply = client.recv_msg()
    assert reply is not None and reply.type == MSG_CONNECTFAIL
    assert reply.serializer_id == _MARSHAL
    reason = marshal.loads(bytes(reply.data))
    assert reason == f"message used serializer that is not accepted: {serializer_id}"
    client.expect_closed(5)
    h.assert_serving()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[1, 2, 3]", "invalid handshake data"),
        (b"'hello'", "invalid handshake data"),
        (b"{'no_handshake_key': 1}", "invalid handshake data"),
        (b"\x00\xff((", "invalid serpent data"),
        (b"{'handshake': ", "invalid serpent data"),
    ],
    ids=["list", "str", "dict-without-handshake", "binary", "truncated"],
)
def test_connect_with_bad_payload_gets_connectfail(h: Served, payload: bytes, reason: str) -> None:
    client = h.raw()
    client.send_msg(MSG_CONNECT, payload, _SERPENT, seq=9)
    reply = client.recv_msg()
    assert reply is not None and reply.type == MSG_CONNECTFAIL and reply.seq == 9
    assert reply.serializer_id == _SERPENT  # answered in the client's own (accepted) serializer
    text = h.ser.loads(reply.data)
    assert isinstance(text, str) and text.startswith(reason), text
    client.expect_closed(5)
    h.assert_serving()


def test_proxy_with_unaccepted_serializer_gets_clear_error(h: Served) -> None:
    with h.proxy(SERIALIZER="pickle") as p:
        with pytest.raises(errors.CommunicationError, match="serializer that is not accepted: 4"):
            p.add(1, 2)
    h.assert_serving()


# --- calls that do not deserialize --------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x00\x01garbage", "invalid serpent call data"),
        (b"('svc', 'add', (1, 2", "invalid serpent call data"),
        (b"('svc', 'add')", "not a 4-tuple"),
        (b"['svc', 'add', [1], {}, 'extra']", "not a 4-tuple"),
        (b"{'object': 'svc'}", "not a 4-tuple"),
        (b"(42, 'add', (1, 2), {})", "object id and method name must be strings"),
        (b"('svc', None, (1, 2), {})", "object id and method name must be strings"),
        (b"('svc', 'add', 5, {})", "vargs must be a sequence"),
        (b"('svc', 'add', (1, 2), [1])", "kwargs a dict or None"),
        (b"('svc', 'add', ({'__class__': 'os.system'}, 2), {})", "unsupported serialized class: os.system"),
    ],
    ids=["binary", "truncated", "2-tuple", "5-list", "dict", "int-object", "none-method", "int-vargs",
         "list-kwargs", "unknown-class"],
)
def test_invoke_that_does_not_deserialize_gets_serialize_error(h: Served, payload: bytes, message: str) -> None:
    client = h.handshaken()
    client.send_msg(MSG_INVOKE, payload, _SERPENT, seq=11)
    reply = client.recv_msg()
    assert reply is not None and reply.type == MSG_RESULT and reply.seq == 11
    assert reply.flags & FLAGS_EXCEPTION
    error = h.ser.loads(reply.data)
    assert isinstance(error, errors.SerializeError) and message in str(error), repr(error)
    client.invoke(h.ser, "svc", "add", (40, 2), seq=12)  # framing is intact: the connection goes on
    reply = client.recv_msg()
    assert reply is not None and reply.seq == 12 and h.ser.loads(reply.data) == 42
    h.assert_serving()


def test_invoke_with_refused_class_name_gets_security_error_then_close(h: Served) -> None:
    client = h.handshaken()
    client.send_msg(MSG_INVOKE, b"('svc', 'add', ({'__class__': 'builtins.__import__'}, 2), {})", _SERPENT, seq=5)
    reply = client.recv_msg()
    assert reply is not None and reply.flags & FLAGS_EXCEPTION and reply.seq == 5
    error = h.ser.loads(reply.data)
    assert isinstance(error, errors.SecurityError) and "double underscores" in str(error)
    client.expect_closed(5)
    h.assert_serving()


def test_ping_after_handshake_is_answered(h: Served) -> None:
    client = h.handshaken()
    client.send_msg(MSG_PING, b"are you there", _SERPENT, seq=77)
    reply = client.recv_msg()
    assert reply is not None and reply.type == MSG_PING and reply.seq == 77
    h.assert_serving()


# --- clients that vanish ----------------------------------------------------------------------
def _reset(client: RawClient) -> None:
    """Close with a TCP reset (SO_LINGER 0) instead of a FIN, where the socket supports it."""
    if client.sock.family != socket.AF_UNIX:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("where", ["half-header", "header-and-half-payload", "half-connect", "after-connect-sent"])
def test_client_vanishing_mid_message(h: Served, where: str, how: str) -> None:
    if where.endswith("connect") or where == "after-connect-sent":
        client = h.raw()
        connect = _connect_bytes(h)
        client.send(connect[: len(connect) // 2] if where == "half-connect" else connect)
    else:
        client = h.handshaken()
        msg = _invoke_bytes(h, "echo", ("p" * 5000,))
        client.send(msg[:12] if where == "half-header" else msg[: HEADER_SIZE + 2500])
    time.sleep(0.05)
    (_reset if how == "reset" else RawClient.close)(client)
    h.assert_serving()


@pytest.mark.parametrize("size", [0, 4_000_000], ids=["small-reply", "large-reply"])
@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_vanishing_while_its_call_runs(h: Served, size: int, how: str) -> None:
    """The reply goes to a dead peer: the send fails quietly and the daemon serves on."""
    clients = [h.handshaken() for _ in range(2)]
    for client in clients:
        client.invoke(h.ser, "svc", "slow", (0.2, size), seq=1)
    time.sleep(0.05)  # the calls are running (multiplex: the first one is, the second waits its turn)
    for client in clients:
        (_reset if how == "reset" else RawClient.close)(client)
    time.sleep(0.25)  # past the end of the (thread server's concurrent) calls: their replies have failed
    h.assert_serving()  # multiplex: served once both slow calls are done
    assert h.worker_threads() <= h.config.THREADPOOL_SIZE


def test_proxy_timing_out_while_its_call_runs(h: Served) -> None:
    with h.proxy() as p:
        p._pyroTimeout = 0.1
        with pytest.raises(errors.TimeoutError):
            p.slow(0.4, 100_000)
        assert p._pyroConnection is None  # released: a late reply can't be mistaken for the next one
        p._pyroTimeout = None
        assert p.add(3, 4) == 7
    h.assert_serving()


# --- slowloris ---------------------------------------------------------------------------------
def test_hundred_slowloris_clients_without_commtimeout(h: Served) -> None:
    """Clients that never finish their header cost nothing but a socket: everyone else is served."""
    connect = _connect_bytes(h)
    stuck = []
    for i in range(100):
        if i % 2:
            client = h.raw(timeout=2)
            client.send(connect[:10])  # never finishes its handshake header
        else:
            client = h.handshaken(timeout=2)
            client.send(_invoke_bytes(h)[: HEADER_SIZE - 1])  # one byte short of a header
        stuck.append(client)
    start = time.monotonic()
    for _ in range(5):
        h.assert_serving()
    assert time.monotonic() - start < 5
    readable, _, _ = select.select([c.sock for c in stuck], [], [], 0.3)
    assert readable == [], "without COMMTIMEOUT stuck connections stay open (harmless)"
    h.assert_serving()


def test_commtimeout_closes_stuck_connections_in_bounded_time(kind: tuple[str, str]) -> None:
    with served(*kind, COMMTIMEOUT=0.5) as h:
        before_handshake = h.raw(timeout=5)
        before_handshake.send(_connect_bytes(h)[:10])
        mid_call = h.handshaken(timeout=5)
        mid_call.send(_invoke_bytes(h)[: HEADER_SIZE + 3])
        start = time.monotonic()
        stuck = {before_handshake.sock, mid_call.sock}
        while stuck and time.monotonic() - start < 4:
            assert h.pre.add(1, 1) == 2  # the earlier proxy stays busy meanwhile: never cut
            readable, _, _ = select.select(list(stuck), [], [], 0.1)
            for sock in readable:
                assert sock.recv(100) == b"", "a stuck connection got bytes instead of being closed"
                stuck.discard(sock)
        elapsed = time.monotonic() - start
        assert not stuck, "stuck connections still open after 4s with COMMTIMEOUT=0.5"
        assert 0.3 < elapsed < 3.0, f"stuck connections closed after {elapsed:.2f}s with COMMTIMEOUT=0.5"
        h.assert_serving()


def test_commtimeout_does_not_cut_a_connection_before_it(kind: tuple[str, str]) -> None:
    with served(*kind, COMMTIMEOUT=0.5) as h:
        client = h.handshaken(timeout=5)
        client.send(_invoke_bytes(h)[:10])
        time.sleep(0.2)
        assert client.is_open(0.05)  # well before COMMTIMEOUT
        client.send(_invoke_bytes(h)[10:])  # finishing the message in time gets the answer
        reply = client.recv_msg()
        assert reply is not None and h.ser.loads(reply.data) == 3
        h.assert_serving()
