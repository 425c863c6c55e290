"""A raw-socket Pyro client for fault tests: send any bytes or hand-made messages, read replies or EOF.

Where a Proxy cannot produce a fault (garbage, a lying header, a half-sent message, a call before the
handshake, ...), the tests talk to the daemon through :class:`RawClient`, built on plain sockets and
:func:`pyroplug.core.protocol.encode` / :class:`~pyroplug.core.protocol.MessageReader`.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from pyroplug.core.protocol import (
    HEADER_SIZE,
    MSG_CONNECT,
    MSG_CONNECTOK,
    MSG_INVOKE,
    Message,
    MessageReader,
    encode,
)

__all__ = ["HEADER", "RawClient", "header", "tamper"]

#: the header layout (see the table in pyroplug.core.protocol)
HEADER = struct.Struct("!4sHHHHiHHHH")


def header(
    msgtype: int = MSG_INVOKE, flags: int = 0, seq: int = 0, size: int = 0, serializer_id: int = 1,
    ann_size: int = 0, *, tag: bytes = b"PYRO", version: int = 48, checksum: int | None = None,
) -> bytes:
    """A 24-byte header with any field values (the checksum is correct unless given)."""
    if checksum is None:
        checksum = (msgtype + version + size + ann_size + serializer_id + flags + seq + 0x34E9) & 0xFFFF
    return HEADER.pack(tag, version, msgtype, flags, seq, size, serializer_id, ann_size, 0, checksum)


def tamper(message: bytes, **fields: Any) -> bytes:
    """``message`` with some header fields replaced (checksum recomputed unless ``checksum`` is given)."""
    tag, version, msgtype, flags, seq, size, ser, ann_size, _reserved, _checksum = HEADER.unpack_from(message)
    values = {"tag": tag, "version": version, "msgtype": msgtype, "flags": flags, "seq": seq, "size": size,
              "serializer_id": ser, "ann_size": ann_size}
    values.update(fields)
    return header(**values) + message[HEADER_SIZE:]


class RawClient:
    """One plain stream socket to a daemon's listener (a TCP address tuple or a unix socket path)."""

    def __init__(self, address: Any, timeout: float = 5.0) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.reader = MessageReader()
        self.timeout = timeout

    # --- sending ------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_msg(
        self, msgtype: int, data: bytes, serializer_id: int, flags: int = 0, seq: int = 0,
        annotations: dict[str, bytes] | None = None,
    ) -> None:
        self.sock.sendall(encode(msgtype, data, serializer_id, flags, seq, annotations))

    def connect_msg(self, serializer: Any, seq: int = 0) -> None:
        """Send a CONNECT in ``serializer`` (a pyroplug Serializer instance), as a Proxy would."""
        self.send_msg(MSG_CONNECT, serializer.dumps({"handshake": "hello"}), serializer.serializer_id, seq=seq)

    def handshake(self, serializer: Any) -> Message:
        """Complete the handshake; AssertionError unless the daemon answers CONNECTOK."""
        self.connect_msg(serializer)
        msg = self.recv_msg()
        assert msg is not None and msg.type == MSG_CONNECTOK, f"handshake not accepted: {msg!r}"
        return msg

    def invoke(
        self, serializer: Any, obj: str, method: str, vargs: Any = (), kwargs: Any = None, *, flags: int = 0,
        seq: int = 1,
    ) -> None:
        self.send_msg(MSG_INVOKE, serializer.dumps_call(obj, method, vargs, kwargs or {}), serializer.serializer_id,
                      flags, seq)

    # --- receiving ----------------------------------------------------------------------------
    def recv_msg(self, timeout: float | None = None) -> Message | None:
        """The next whole message, or None when the daemon closed the connection first."""
        self.sock.settimeout(timeout or self.timeout)
        reader = self.reader
        while True:
            msg = reader.next_message()
            if msg is not None:
                return msg
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            reader.feed(chunk)

    def expect_closed(self, timeout: float | None = None) -> float:
        """Wait until the daemon closes the connection without sending anything; returns the seconds waited.

        AssertionError when bytes arrive or the connection stays open for ``timeout`` seconds.
        """
        deadline = time.monotonic() + (timeout or self.timeout)
        start = time.monotonic()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the daemon kept the connection open")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                raise AssertionError("the daemon kept the connection open") from None
            assert chunk == b"", f"expected the connection to close without a reply, got {chunk[:60]!r}"
            return time.monotonic() - start

    def is_open(self, wait: float = 0.2) -> bool:
        """True when nothing (not even EOF) arrives within ``wait`` seconds."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            return True
        except OSError:
            return False
        return bool(chunk)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
