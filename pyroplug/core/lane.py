"""Call lanes: the common call in the fewest steps, on both ends of a connection.

**A proxy's lane** (:func:`open_lane`) is opened with the second call of a connection made over a
plain socket (no HMAC, no wire logging, no overridden call hooks). It is a closure over what the
call needs, looked up once: the socket's ``sendall`` and ``recv_into``, the reader's buffer, the
serializer's ``dumps_call`` and ``loads``, the proxy's lock. Per call it checks what may change
between calls (the connection, oneway methods, the thread's call context, the arguments, the
COMPRESSION and MAX_MESSAGE_SIZE config items) and returns :data:`SLOW` before sending anything when
the call is not a plain one: :meth:`Proxy._pyroInvoke` then makes it. A reply that is anything but
one whole plain RESULT (an exception, a stream, annotations besides a correlation id, a large body,
a short read) is handed to the proxy's reader and finished by the proxy's general code.

**A daemon's serving lane** (:func:`serving_lane`, offered to server types through
``RequestHandler.receiver``) receives like ``conn.receive()``, and hands a plain call that arrived
on its own straight to the daemon's dispatch, skipping the general reader and message handling.

Both send and answer exactly what the general paths do (tests/e2e/test_call_lanes.py compares them).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyroplug.core import errors
from pyroplug.core.blob import SerializedBlob
from pyroplug.core.context import current_context
from pyroplug.core.gather import THRESHOLD as _GATHER_THRESHOLD
from pyroplug.core.protocol import (
    _BASE,
    _CORR_CHUNK,
    _TAG_VERSION,
    HEADER_SIZE,
    MSG_INVOKE,
    MSG_RESULT,
    Message,
    _new_message,
    _unpack_chunk,
    _unpack_header,
    encode_plain,
    frame_plain,
)
from pyroplug.core.servertype import HANDLED
from pyroplug.core.transport import map_oserror, receive_error
from pyroplug.core.workers import call_gates as _call_gates

if TYPE_CHECKING:
    from pyroplug.core.daemon import Daemon
    from pyroplug.core.proxy import Proxy
    from pyroplug.core.transport import Connection

__all__ = ["SLOW", "Lane", "open_lane", "serving_lane"]

#: what a lane returns for a call it does not make (nothing was sent): the general path makes it
SLOW: Any = object()

#: a lane: ``lane(method name, vargs, kwargs)`` -> the call's result, or :data:`SLOW`
Lane = Callable[[str, Any, Any], Any]

_CORR_END = HEADER_SIZE + 22  # a reply whose only annotation is a correlation id: the data starts here


def open_lane(proxy: Proxy, conn: Connection) -> Lane | None:
    """The lane of ``proxy``, connected through ``conn`` (its reader set), or None where there is none:
    HMAC, wire logging, a raw wire response, overridden call or annotation hooks, or a connection whose
    sending and receiving are not its socket's own."""
    own = proxy.__dict__
    cfg = own["_pyroConfig"]
    ser = proxy._ser
    io = conn.plain_io()
    if (io is None or ser is None or proxy._hmac is not None or proxy._pyroRawWireResponse or cfg.LOGWIRE
            or not type(proxy)._plain_calls or conn.reader.hmac_key is not None):
        return None
    sendall, recv_into = io
    send_parts = conn.send_parts
    reader = conn.reader
    lock = own["_lock"]
    object_id = own["_object_id"]
    sid = ser.serializer_id
    dumps_call = ser.dumps_call
    loads = ser.loads
    ctx = current_context
    proxy_ref = weakref.ref(proxy)
    own["_pyroSeq"] = proxy._pyroSeq  # the lane counts in the proxy's own dict

    def lane(methodname: str, vargs: Any, kwargs: Any) -> Any:
        if _call_gates:  # a multiplex daemon serves in this process: its re-entrant calls need the general path
            return SLOW
        with lock:
            if (own.get("_pyroConnection") is not conn or methodname in own["_pyroOneway"] or ctx.annotations
                    or ctx.correlation_id_bytes is not None or reader._end or reader._big is not None):
                return SLOW
            for value in vargs:  # large bytes go out without a copy, blobs with their annotation: not here
                kind = type(value)
                if kind is bytes and len(value) >= _GATHER_THRESHOLD or kind is SerializedBlob:
                    return SLOW
            compress = cfg.COMPRESSION
            max_size = cfg.MAX_MESSAGE_SIZE
            payload: bytes | bytearray | memoryview = dumps_call(object_id, methodname, vargs, kwargs)
            seq = own["_pyroSeq"] = (own["_pyroSeq"] + 1) & 0xFFFF
            view = reader._view
            frame = frame_plain(MSG_INVOKE, payload, sid, 0, seq, None, compress, max_size)
            if frame is None:  # large, compressed or not bytes; or too large, which raises (nothing sent)
                head, payload = encode_plain(MSG_INVOKE, payload, sid, 0, seq, None, compress, max_size)
            try:
                if frame is not None:
                    try:
                        sendall(frame)
                    except (OSError, ValueError) as exc:
                        raise map_oserror(exc, "sending") from exc
                else:
                    send_parts(head, payload)
                try:
                    n = recv_into(view)
                except (OSError, ValueError) as exc:
                    n = _receive_again(conn, view, exc)
            except (errors.CommunicationError, errors.SecurityError, KeyboardInterrupt):  # unusable: release
                owner = proxy_ref()
                if owner is not None:
                    owner._pyroRelease()
                raise
            if n >= HEADER_SIZE:
                tag_version, msgtype, flags, rseq, rsize, rsid, ann_size, _reserved, checksum = _unpack_header(view, 0)
                if (n == HEADER_SIZE + ann_size + rsize and msgtype == MSG_RESULT and rseq == seq and rsid == sid
                        and not flags and tag_version == _TAG_VERSION and rsize >= 0
                        and checksum == (msgtype + rseq + rsize + rsid + ann_size + _BASE) & 0xFFFF
                        and not 0 < reader.max_size < rsize + ann_size):
                    if ann_size == 22 and _unpack_chunk(view, HEADER_SIZE) == _CORR_CHUNK:
                        ctx.response_annotations = {"CORR": view[HEADER_SIZE + 6 : _CORR_END].tobytes()}
                        return loads(view[_CORR_END:n].tobytes())
                    if not ann_size:
                        return loads(view[HEADER_SIZE:n].tobytes())
            owner = proxy_ref()
            if owner is None:  # (cannot happen while a caller holds it)
                raise errors.ConnectionClosedError("the proxy no longer exists")
            return owner._finish_call(conn, n, seq, ser)

    return lane


def serving_lane(daemon: Daemon, conn: Connection) -> Callable[[], Any] | None:
    """The daemon's receiver for the handshaked ``conn`` (see ``RequestHandler.receiver``): one read,
    and a plain call that arrived on its own (one whole INVOKE without flags, whose only annotation is
    an optional correlation id) goes straight to the daemon's dispatch; anything else (a partial
    message, several, others) is left to the reader and the server type, as ``conn.receive()`` would.
    None for connections that receive any other way, or check HMACs."""
    io = conn.plain_io()
    reader = conn.reader
    if io is None or not conn.handshaked or reader.hmac_key is not None:
        return None
    recv_into = io[1]
    receive = conn.receive
    received = reader.received
    invoke = daemon._invoke

    def lane() -> Any:
        if reader._end or reader._big is not None or reader.defer_hmac:
            return receive()
        view = reader._view
        try:
            n = recv_into(view)
        except BlockingIOError:  # nothing arrived (a receive timeout set on the socket itself)
            return None
        except (OSError, ValueError) as exc:
            error = receive_error(exc)
            if error is not None:
                raise error from exc
            return None  # interrupted: the server type waits again
        if n >= HEADER_SIZE:
            tag_version, msgtype, flags, seq, size, sid, ann_size, _reserved, checksum = _unpack_header(view, 0)
            if (n == HEADER_SIZE + ann_size + size and msgtype == MSG_INVOKE and not flags
                    and tag_version == _TAG_VERSION and size >= 0
                    and checksum == (msgtype + seq + size + sid + ann_size + _BASE) & 0xFFFF
                    and not 0 < reader.max_size < size + ann_size):
                if ann_size == 22 and _unpack_chunk(view, HEADER_SIZE) == _CORR_CHUNK:
                    annotations = {"CORR": view[HEADER_SIZE + 6 : _CORR_END].tobytes()}
                    data = view[_CORR_END:n].tobytes()
                elif not ann_size:
                    annotations = {}
                    data = view[HEADER_SIZE:n].tobytes()
                else:
                    return received(n)
                msg = _new_message(Message)
                msg.type = MSG_INVOKE
                msg.flags = 0
                msg.seq = seq
                msg.serializer_id = sid
                msg.annotations = annotations
                msg.data = data
                invoke(conn, msg)
                return HANDLED
        return received(n)

    return lane


def _receive_again(conn: Connection, view: memoryview, exc: BaseException) -> int:
    """After a failed receive: the pyroplug error, or (for one that may be retried) the next receive."""
    error = receive_error(exc)
    if error is not None:
        raise error from exc
    return conn.recv_into(view)
