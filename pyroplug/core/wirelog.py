"""LOGWIRE: log every message a proxy or daemon sends and receives (installed per connection, zero cost when off)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyroplug.core.protocol import HEADER_SIZE, Message, parse_header

if TYPE_CHECKING:
    from pyroplug.core.transport import Connection

__all__ = ["describe", "log_received", "wrap_connection"]

log = logging.getLogger("pyroplug.wire")
SHOWN = 200  # payload bytes shown per message


def describe(msg: Message) -> str:
    """One line about a message: type, flags, seq, serializer, annotations and the start of the payload."""
    data = bytes(msg.data[:SHOWN])
    more = "..." if len(msg.data) > SHOWN else ""
    return (
        f"msgtype={msg.type} flags=0x{msg.flags:x} ser={msg.serializer_id} seq={msg.seq} "
        f"annotations={sorted(msg.annotations)} data={data!r}{more}"
    )


def log_received(who: str, msg: Message) -> None:
    log.debug("%s wiredata received: %s", who, describe(msg))


def wrap_connection(conn: Connection, who: str) -> None:
    """Make ``conn`` log what it sends and (for recv_message users) what it receives."""
    send_parts: Callable[[bytes, Any], None] = conn.send_parts
    recv_message: Callable[[], Message] = conn.recv_message

    def logged_send(head: bytes, payload: Any) -> None:
        msgtype, flags, seq, size, ser, ann_size = parse_header(head[:HEADER_SIZE])
        log.debug(
            "%s wiredata sending: msgtype=%d flags=0x%x ser=%d seq=%d annotations=%d bytes data=%r%s",
            who, msgtype, flags, ser, seq, ann_size, bytes(payload[:SHOWN]), "..." if size > SHOWN else "",
        )
        send_parts(head, payload)

    def logged_recv() -> Message:
        msg = recv_message()
        log_received(who, msg)
        return msg

    conn.send_parts = logged_send  # type: ignore[method-assign]
    conn.plain_send = None  # everything sent goes through the logging send_parts
    conn.recv_message = logged_recv  # type: ignore[method-assign]
