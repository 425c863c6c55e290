"""Sans-IO codec of the Pyro4 wire protocol, version 48: bytes in, messages out; no sockets, no globals.

A message is ``[24-byte header][annotation chunks][payload]``; every integer is big-endian:

======  ====  =================  ==============================================================
offset  size  field              notes
======  ====  =================  ==============================================================
0       4     tag                ``b"PYRO"``
4       2     version            48
6       2     message type       MSG_CONNECT .. MSG_PING (1..6)
8       2     flags              FLAGS_* bits
10      2     sequence number    echoed by the reply, wraps at 0xFFFF
12      4     data length        signed int32, payload bytes only
16      2     serializer id      1 serpent, 2 json, 3 marshal, 4 pickle, 5 dill, 6 msgpack, ...
18      2     annotations length total bytes of all annotation chunks
20      2     reserved           0
22      2     checksum           (type+version+datalen+annlen+serializer+flags+seq+0x34E9) & 0xFFFF
======  ====  =================  ==============================================================

Each annotation chunk is a 4-byte ASCII key, a uint16 length and that many bytes. ``HMAC`` holds the
HMAC-SHA1 of the wire payload followed by the other annotation values in key order.
Compression (zlib) applies to payloads of at least 200 bytes when it makes them smaller.
``max_size`` (MAX_MESSAGE_SIZE) is checked from the header, before any payload is buffered.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from pyroplug.core import errors
from pyroplug.core.constants import PROTOCOL_VERSION
from pyroplug.core.gather import THRESHOLD as _GATHER_THRESHOLD

try:
    import mmap as _mmap
except ImportError:  # pragma: no cover - platforms without mmap use growing bytearrays
    _mmap = None  # type: ignore[assignment]

__all__ = [
    "FLAGS_BATCH",
    "FLAGS_COMPRESSED",
    "FLAGS_EXCEPTION",
    "FLAGS_ITEMSTREAMRESULT",
    "FLAGS_KEEPSERIALIZED",
    "FLAGS_META_ON_CONNECT",
    "FLAGS_ONEWAY",
    "HEADER_SIZE",
    "MSG_CONNECT",
    "MSG_CONNECTFAIL",
    "MSG_CONNECTOK",
    "MSG_INVOKE",
    "MSG_PING",
    "MSG_RESULT",
    "Message",
    "MessageReader",
    "SplitBody",
    "encode",
    "register_splitter",
    "encode_gather",
    "encode_parts",
    "frame_plain",
]

MSG_CONNECT = 1
MSG_CONNECTOK = 2
MSG_CONNECTFAIL = 3
MSG_INVOKE = 4
MSG_RESULT = 5
MSG_PING = 6
MSG_TYPES = frozenset(range(MSG_CONNECT, MSG_PING + 1))

FLAGS_EXCEPTION = 1 << 0
FLAGS_COMPRESSED = 1 << 1
FLAGS_ONEWAY = 1 << 2
FLAGS_BATCH = 1 << 3
FLAGS_META_ON_CONNECT = 1 << 4
FLAGS_ITEMSTREAMRESULT = 1 << 5
FLAGS_KEEPSERIALIZED = 1 << 6

CHECKSUM_MAGIC = 0x34E9
COMPRESSION_THRESHOLD = 200
MAX_DATA_SIZE = 0x7FFFFFFF
MAX_ANNOTATIONS_SIZE = 0xFFFF

_HEADER = struct.Struct("!4sHHHHiHHHH")
#: the same layout with tag and version read as one 6-byte field, for a single comparison
_HEADER_IN = struct.Struct("!6sHHHiHHHH")
_CHUNK = struct.Struct("!4sH")
HEADER_SIZE = _HEADER.size  # 24
_TAG = b"PYRO"
_TAG_VERSION = _TAG + PROTOCOL_VERSION.to_bytes(2, "big")
_BASE = PROTOCOL_VERSION + CHECKSUM_MAGIC
_pack_header = _HEADER.pack
_unpack_header = _HEADER_IN.unpack_from
_pack_chunk = _CHUNK.pack
_BYTES_TYPES = (bytes, bytearray)
_new_message = object.__new__
_INITIAL = 65536  # MessageReader.INITIAL
_START = 4096  # MessageReader.START
_LARGE_BODY = _INITIAL - HEADER_SIZE  # bodies larger than this get a dedicated buffer
_MIN_ROOM = 4096  # MessageReader.MIN_ROOM
_unpack_chunk = _CHUNK.unpack_from


class SplitBody:
    """The payload of a large message whose one large ``bytes`` value was received on its own.

    ``head`` + ``value`` + ``tail`` are the payload bytes. ``value`` is a ``bytes`` object the socket
    filled directly, so a serializer that understands this type (see :func:`register_splitter`) hands
    it out without copying it. Anything else can use ``bytes(body)`` (which joins the parts) or ``len``.
    """

    __slots__ = ("head", "value", "tail")

    def __init__(self, head: bytes, value: bytes, tail: bytes) -> None:
        self.head = head
        self.value = value
        self.tail = tail

    def __len__(self) -> int:
        return len(self.head) + len(self.value) + len(self.tail)

    def __bytes__(self) -> bytes:
        return b"".join((self.head, self.value, self.tail))

    def tobytes(self) -> bytes:
        """The payload as one bytes object (a copy)."""
        return bytes(self)

    def __getitem__(self, index: Any) -> Any:
        return bytes(self)[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SplitBody, bytes, bytearray, memoryview)):
            return bytes(self) == bytes(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<SplitBody head={len(self.head)} value={len(self.value)} tail={len(self.tail)}>"


#: serializer id -> function(msgtype, payload prefix, payload size) -> (offset, length) of one large
#: ``bytes`` value in the payload, or None (see :func:`register_splitter`)
_SPLITTERS: dict[int, Callable[[int, memoryview, int], tuple[int, int] | None]] = {}
#: a large value this long or longer is received into a bytes object of its own
SPLIT_THRESHOLD = 1 << 20


def register_splitter(serializer_id: int, locate: Callable[[int, memoryview, int], tuple[int, int] | None]) -> None:
    """Let large messages of a serializer hand their one large ``bytes`` value out without a copy.

    ``locate(msgtype, prefix, size)`` gets the type (MSG_INVOKE or MSG_RESULT) of a large message
    without HMAC, compression or special flags, the first received bytes of its payload and the
    payload size, and returns the (offset, length) of the raw bytes of the value that the serializer
    can place back into the decoded call or result by itself, or None. The reader then receives that
    value straight into a ``bytes`` object and the message's ``data`` becomes a :class:`SplitBody`,
    which the serializer's ``loads``/``loads_call`` must accept.
    """
    _SPLITTERS[serializer_id] = locate


def _make_writable_bytes() -> Callable[[int], tuple[bytes, memoryview]] | None:
    """A function making a new, unfilled ``bytes`` object with a writable view of its contents, or None.

    CPython only (the C API's ``PyBytes_FromStringAndSize(NULL, n)``, what ``socket.recv`` uses, and
    ``PyMemoryView_FromMemory``); the object is filled before anything else sees it, and the view is
    released before the object is handed out. Checked once here, else None (no split receives).
    """
    if sys.implementation.name != "cpython":
        return None
    try:
        import ctypes

        api = ctypes.pythonapi
        new = api.PyBytes_FromStringAndSize
        new.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
        new.restype = ctypes.py_object
        view_of = api.PyMemoryView_FromMemory
        view_of.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int)
        view_of.restype = ctypes.py_object
        offset = bytes.__basicsize__ - 1  # ob_sval: the header, then the bytes and their NUL
        buf_write = 0x200  # PyBUF_WRITE

        def writable(size: int) -> tuple[bytes, memoryview]:
            value = new(None, size)
            return value, view_of(id(value) + offset, size, buf_write)

        probe, view = writable(7)
        view[:] = b"pyroplg"
        view.release()
        if probe != b"pyroplg" or len(probe) != 7 or hash(probe) != hash(b"pyroplg"):
            return None
        return writable
    except Exception:  # noqa: BLE001 - no ctypes, or an unexpected layout: go without
        return None


_writable_bytes = _make_writable_bytes()
#: message flags whose payloads are not a plain call or result value
_NO_SPLIT_FLAGS = FLAGS_COMPRESSED | FLAGS_EXCEPTION | FLAGS_BATCH | FLAGS_ITEMSTREAMRESULT | FLAGS_KEEPSERIALIZED
#: the most payload bytes a splitter is shown
_SPLIT_PREFIX = 65536


class Message:
    """One decoded message. ``data`` is the payload (bytes-like, already decompressed).

    ``annotations`` is a dict of its own (empty when the message carried none).
    """

    __slots__ = ("type", "flags", "seq", "serializer_id", "annotations", "data")

    def __init__(
        self,
        msgtype: int,
        data: bytes | bytearray | memoryview,
        serializer_id: int,
        flags: int = 0,
        seq: int = 0,
        annotations: Mapping[str, bytes] | None = None,
    ) -> None:
        self.type = msgtype
        self.flags = flags
        self.seq = seq
        self.serializer_id = serializer_id
        self.annotations: Mapping[str, bytes] = {} if annotations is None else annotations
        self.data = data

    def __repr__(self) -> str:
        return (
            f"<Message type={self.type} flags={self.flags:#x} seq={self.seq} serializer={self.serializer_id} "
            f"annotations={sorted(self.annotations)} size={len(self.data)}>"
        )


def hmac_digest(key: bytes, data: Any, annotations: Mapping[str, bytes]) -> bytes:
    """HMAC-SHA1 over the payload, then the values of every non-HMAC annotation in key order.

    ``data`` is bytes-like, or a list of bytes-like parts (a payload to send gathered).
    """
    if type(data) is list:
        mac = hmac.new(key, digestmod=hashlib.sha1)
        for part in data:
            mac.update(part)
    else:
        mac = hmac.new(key, data, hashlib.sha1)
    for k in sorted(annotations):
        if k != "HMAC":
            mac.update(annotations[k])
    return mac.digest()


#: validated annotation keys -> their 4 wire bytes (bounded; keys are few in practice)
_KEYS: dict[Any, bytes] = {}
#: wire bytes of the well-known annotation keys -> their names
_KEY_NAMES: dict[bytes, str] = {k.encode(): k for k in ("HMAC", "CORR", "STRM", "BLBI")}


def _wire_key(key: Any) -> bytes:
    try:
        bkey = key.encode("ascii") if isinstance(key, str) else bytes(key)
    except (UnicodeEncodeError, TypeError):
        raise errors.ProtocolError(f"annotation key must be 4 ASCII characters: {key!r}") from None
    if len(bkey) != 4:
        raise errors.ProtocolError(f"annotation key must be exactly 4 characters: {key!r}")
    if len(_KEYS) < 256:
        _KEYS[key] = bkey
    return bkey


#: the chunk header of the one annotation nearly every reply carries: a 16-byte correlation id
_CORR_HEAD = _pack_chunk(b"CORR", 16)
_JOIN_LIMIT = _GATHER_THRESHOLD  # frame_plain: larger data goes out in a gathering send, not copied
_CORR_CHUNK = (b"CORR", 16)


def _annotation_chunks(annotations: Mapping[str, bytes]) -> bytes:
    if len(annotations) == 1:
        corr = annotations.get("CORR")
        if corr is not None and len(corr) == 16:
            return _CORR_HEAD + corr
    chunks = b""
    for key, value in annotations.items():
        size = len(value)
        if size > MAX_ANNOTATIONS_SIZE:
            raise errors.MessageTooLargeError(f"annotation {key!r} too large ({size} bytes)")
        chunks += _pack_chunk(_KEYS.get(key) or _wire_key(key), size) + value
    return chunks


def encode_parts(
    msgtype: int,
    data: bytes | bytearray | memoryview,
    serializer_id: int,
    flags: int = 0,
    seq: int = 0,
    annotations: Mapping[str, bytes] | None = None,
    hmac_key: bytes | None = None,
    compress: bool = False,
    max_size: int = 0,
) -> tuple[bytes, bytes | bytearray | memoryview]:
    """Encode a message as (header + annotation chunks, payload), ready for a gathering send.

    The payload is returned as given (no copy) unless it was compressed. Raises
    MessageTooLargeError (before anything is sent) when data + annotations exceed ``max_size``
    (0 means unlimited) or the fields of the header, and ProtocolError for a bad annotation key or
    a header field out of range.
    """
    if compress and len(data) >= COMPRESSION_THRESHOLD:
        packed = zlib.compress(data)
        if len(packed) < len(data):
            data = packed
            flags |= FLAGS_COMPRESSED
    if hmac_key:
        annotations = dict(annotations) if annotations else {}
        annotations["HMAC"] = hmac_digest(hmac_key, data, annotations)
    size = len(data)
    if annotations:
        corr = annotations.get("CORR") if len(annotations) == 1 else None
        if corr is not None and len(corr) == 16:  # what nearly every reply carries
            ann = _CORR_HEAD + corr
            ann_size = 22
        else:
            ann = _annotation_chunks(annotations)
            ann_size = len(ann)
            if ann_size > MAX_ANNOTATIONS_SIZE:
                raise errors.MessageTooLargeError(f"annotations too large for the protocol ({ann_size} bytes)")
    else:
        ann = b""
        ann_size = 0
    if size > MAX_DATA_SIZE:
        raise errors.MessageTooLargeError(f"message too large for the protocol ({size} bytes)")
    if 0 < max_size < size + ann_size:
        raise errors.MessageTooLargeError(f"max message size exceeded ({size + ann_size} where max={max_size})")
    try:
        header = _pack_header(
            _TAG,
            PROTOCOL_VERSION,
            msgtype,
            flags,
            seq,
            size,
            serializer_id,
            ann_size,
            0,
            (msgtype + _BASE + size + ann_size + serializer_id + flags + seq) & 0xFFFF,
        )
    except struct.error as exc:
        raise errors.ProtocolError(f"header field out of range: {exc}") from None
    return (header + ann if ann_size else header), data


def encode_plain(
    msgtype: int,
    data: bytes | bytearray | memoryview,
    serializer_id: int,
    flags: int = 0,
    seq: int = 0,
    corr: bytes | None = None,
    compress: bool = False,
    max_size: int = 0,
) -> tuple[bytes, bytes | bytearray | memoryview]:
    """:func:`encode_parts` for a message without HMAC whose only annotation is an optional correlation id
    ``corr``: the per-call path (calls and their replies), in fewer steps. The same result and errors."""
    size = len(data)
    if (size <= MAX_DATA_SIZE and not (compress and size >= COMPRESSION_THRESHOLD)
            and (corr is None or len(corr) == 16) and not 0 < max_size < size + (0 if corr is None else 22)):
        try:
            if corr is None:
                return _pack_header(_TAG, PROTOCOL_VERSION, msgtype, flags, seq, size, serializer_id, 0, 0,
                                    (msgtype + _BASE + size + serializer_id + flags + seq) & 0xFFFF), data
            return _pack_header(_TAG, PROTOCOL_VERSION, msgtype, flags, seq, size, serializer_id, 22, 0,
                                (msgtype + _BASE + size + 22 + serializer_id + flags + seq) & 0xFFFF) + _CORR_HEAD + corr, data
        except struct.error:
            pass  # a field out of range: encode_parts names it
    return encode_parts(msgtype, data, serializer_id, flags, seq, None if corr is None else {"CORR": corr}, None,
                        compress, max_size)


def frame_plain(
    msgtype: int,
    data: bytes | bytearray | memoryview,
    serializer_id: int,
    flags: int,
    seq: int,
    corr: bytes | None,
    compress: bool,
    max_size: int,
) -> bytes | None:
    """The whole message (header, the optional correlation id, ``data``) as one ``bytes`` for one send,
    when :func:`encode_plain` would encode it the short way and ``data`` is smaller than the size from
    which a gathering send pays (gather.THRESHOLD); None otherwise: then use encode_plain."""
    size = len(data)
    if type(data) is bytes and size < _JOIN_LIMIT and not (compress and size >= COMPRESSION_THRESHOLD):
        try:
            if corr is None:
                if not 0 < max_size < size:
                    return _pack_header(_TAG, PROTOCOL_VERSION, msgtype, flags, seq, size, serializer_id, 0, 0,
                                        (msgtype + _BASE + size + serializer_id + flags + seq) & 0xFFFF) + data
            elif len(corr) == 16 and not 0 < max_size < size + 22:
                return _pack_header(_TAG, PROTOCOL_VERSION, msgtype, flags, seq, size, serializer_id, 22, 0,
                                    (msgtype + _BASE + size + 22 + serializer_id + flags + seq) & 0xFFFF) + _CORR_HEAD + corr + data
        except struct.error:
            pass  # a field out of range: encode_plain names it
    return None


def encode_gather(
    msgtype: int,
    parts: list[Any],
    serializer_id: int,
    flags: int = 0,
    seq: int = 0,
    annotations: Mapping[str, bytes] | None = None,
    hmac_key: bytes | None = None,
    compress: bool = False,
    max_size: int = 0,
) -> tuple[bytes, list[Any]]:
    """:func:`encode_parts` for a payload given as a list of bytes-like parts (for a gathering send).

    The parts are not joined (the HMAC is computed over them in turn), unless compression is on.
    """
    if compress:
        head, data = encode_parts(msgtype, b"".join(parts), serializer_id, flags, seq, annotations, hmac_key, True,
                                  max_size)
        return head, [data]
    size = 0
    for part in parts:
        size += len(part)
    if hmac_key:
        annotations = dict(annotations) if annotations else {}
        annotations["HMAC"] = hmac_digest(hmac_key, parts, annotations)
    head, _ = encode_parts(msgtype, b"", serializer_id, flags, seq, annotations, None, False, 0)
    if size > MAX_DATA_SIZE:
        raise errors.MessageTooLargeError(f"message too large for the protocol ({size} bytes)")
    ann_size = len(head) - HEADER_SIZE
    if 0 < max_size < size + ann_size:
        raise errors.MessageTooLargeError(f"max message size exceeded ({size + ann_size} where max={max_size})")
    # the header of an empty payload, with the real size and checksum put in
    fields = list(_unpack_header(head, 0))
    fields[4] = size
    fields[8] = (fields[8] + size) & 0xFFFF
    return _pack_header(_TAG, PROTOCOL_VERSION, *fields[1:]) + head[HEADER_SIZE:], parts


def encode(
    msgtype: int,
    data: bytes | bytearray | memoryview,
    serializer_id: int,
    flags: int = 0,
    seq: int = 0,
    annotations: Mapping[str, bytes] | None = None,
    hmac_key: bytes | None = None,
    compress: bool = False,
    max_size: int = 0,
) -> bytes:
    """Encode a whole message to one bytes object (see :func:`encode_parts`)."""
    head, payload = encode_parts(msgtype, data, serializer_id, flags, seq, annotations, hmac_key, compress, max_size)
    return head + payload


def parse_annotations(raw: bytes | bytearray | memoryview) -> dict[str, bytes]:
    """Split annotation chunks; ProtocolError when a chunk overruns or a key is not ASCII."""
    return _parse_annotations(memoryview(raw).cast("B"), 0, len(raw))


def _parse_annotations(view: memoryview, i: int, end: int) -> dict[str, bytes]:
    result: dict[str, bytes] = {}
    while i < end:
        if i + 6 > end:
            raise errors.ProtocolError("annotation chunk header truncated")
        key, length = _unpack_chunk(view, i)
        i += 6
        stop = i + length
        if stop > end:
            raise errors.ProtocolError("annotation chunk length overruns the annotations")
        skey = _KEY_NAMES.get(key)
        if skey is None:
            try:
                skey = key.decode("ascii")
            except UnicodeDecodeError:
                raise errors.ProtocolError(f"annotation key is not ASCII: {key!r}") from None
        result[skey] = view[i:stop].tobytes()
        i = stop
    return result


def parse_header(header: bytes | bytearray | memoryview) -> tuple[int, int, int, int, int, int]:
    """Validate a 24-byte header; returns (type, flags, seq, data size, serializer id, annotations size)."""
    if len(header) < HEADER_SIZE:
        raise errors.ProtocolError("header data size mismatch")
    fields = _unpack_header(header, 0)
    _check_header(fields)
    return fields[1], fields[2], fields[3], fields[4], fields[5], fields[6]


def _check_header(fields: tuple[Any, ...]) -> None:
    """Validate raw header fields (tag+version, type, flags, seq, size, serializer, annotations
    size, reserved, checksum); raises ProtocolError naming the first problem found."""
    tag_version, msgtype, flags, seq, size, ser, ann_size, _reserved, checksum = fields
    if tag_version != _TAG_VERSION:
        raise errors.ProtocolError("invalid data or unsupported protocol version")
    if checksum != (msgtype + flags + seq + size + ser + ann_size + _BASE) & 0xFFFF:
        raise errors.ProtocolError("header checksum mismatch")
    if size < 0:
        raise errors.ProtocolError(f"invalid data length {size}")
    if msgtype not in MSG_TYPES:
        raise errors.ProtocolError(f"invalid msg type {msgtype} received")


class BigBuffers:
    """Spare buffers for large message bodies, shared by every reader of the process.

    A large body is received into an anonymous memory map of its size: the kernel hands out its pages
    only as bytes arrive (so a header that lies about the size costs address space, not memory) and
    nothing is copied when it fills up. A consumer done with such a message gives it back with
    :meth:`MessageReader.recycle`; when nothing else refers to its buffer any more, the buffer is kept
    here (up to :attr:`LIMIT` bytes in all) for the next large body, which then needs no fresh pages,
    whose faults cost more than the copy itself on many machines.
    """

    #: the most bytes kept in spare buffers
    LIMIT = 64 * 1024 * 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spares: list[Any] = []
        self._bytes = 0

    def take(self, size: int) -> Any:
        """A spare buffer of at least ``size`` bytes (the smallest such), a new map, or None (no mmap)."""
        if self._spares:
            with self._lock:
                best = None
                for buf in self._spares:
                    if len(buf) >= size and (best is None or len(buf) < len(best)):
                        best = buf
                if best is not None:
                    self._spares.remove(best)
                    self._bytes -= len(best)
                    return best
        if _mmap is None:
            return None
        try:
            return _mmap.mmap(-1, size)
        except (OSError, ValueError, OverflowError):  # out of address space or refused: grow a bytearray
            return None

    def give(self, buf: Any) -> None:
        """Keep ``buf`` for reuse (when there is room); the caller must hold its only reference."""
        with self._lock:
            if self._bytes + len(buf) <= self.LIMIT:
                self._spares.append(buf)
                self._bytes += len(buf)

    def clear(self) -> None:
        """Drop every spare buffer."""
        with self._lock:
            self._spares.clear()
            self._bytes = 0


#: the process-wide spare buffers of large message bodies
big_buffers = BigBuffers()
_MMAP_TYPE: Any = _mmap.mmap if _mmap is not None else None
_getrefcount = getattr(sys, "getrefcount", None)


class MessageReader:
    """Incremental decoder: feed bytes (or fill :meth:`get_buffer`), take complete messages out.

    ``max_size`` is MAX_MESSAGE_SIZE (0 = unlimited): checked from the header, before the body is
    buffered, and again on the decompressed size of a compressed payload. ``hmac_key`` enables HMAC
    checking (and requires it). Messages up to :attr:`INITIAL` bytes are assembled in one reusable
    buffer, which starts at :attr:`START` bytes (cheap to create for a short-lived connection) and
    grows in one step to fit the first message that needs more; a larger body gets a dedicated
    buffer of its own and its ``data`` is handed out as a memoryview without a further copy. That buffer is a memory map of the body's size whose pages
    exist only once bytes arrive (see :class:`BigBuffers`; without mmap, a bytearray allocated in steps
    of at most :attr:`BIG_PREALLOC` bytes as data arrives), and is filled at most
    :attr:`BIG_PREALLOC` bytes per read, so a lying header cannot make the reader allocate gigabytes.
    Errors are pyroplug exceptions; after one, the stream is unusable and the connection should close.

    With :attr:`defer_hmac` set, a message that needs an HMAC check (the reader has a key, or the
    message carries an ``HMAC`` annotation) is handed out unverified and still compressed, and
    :meth:`authenticate` then raises the SecurityError: a daemon reads the CONNECT message this way
    so that it can answer CONNECTFAIL with the reason before it closes the connection.
    """

    __slots__ = (
        "max_size",
        "hmac_key",
        "_buf",
        "_view",
        "_start",
        "_end",
        "_header",
        "_big",
        "_bigfill",
        "_bigsize",
        "_split",
        "_nosplit",
        "defer_hmac",
    )

    #: the most the reusable buffer grows to for one message; messages larger than this use a dedicated buffer
    INITIAL = _INITIAL
    #: initial size of the reusable buffer (grown on demand, up to :attr:`INITIAL` for one message)
    START = _START
    #: the most a dedicated buffer grows by before the bytes to fill it have arrived
    BIG_PREALLOC = 4 * 1024 * 1024
    #: compact the reusable buffer when less than this much room is left at its end
    MIN_ROOM = _MIN_ROOM

    def __init__(self, max_size: int = 0, hmac_key: bytes | None = None) -> None:
        self.max_size = max_size
        self.hmac_key = hmac_key
        self._buf = bytearray(self.START)
        # a permanent view of _buf: it is never resized, only replaced, so the export is harmless
        self._view = memoryview(self._buf)
        self._start = 0  # first unconsumed byte in _buf
        self._end = 0  # end of the received bytes in _buf
        self._header: tuple[Any, ...] | None = None  # raw header fields of the message in progress
        self._big: bytearray | None = None  # dedicated body buffer of a large message
        self._bigfill = 0  # bytes of the large body received so far
        self._bigsize = 0  # size of the large body (annotations + data)
        #: (value, writable view of it, start, end in the body) when the large body's value is received apart
        self._split: tuple[bytes, memoryview, int, int] | None = None
        self._nosplit = False  # the large body in progress is not to be split
        #: hand out messages whose HMAC is still to be checked instead of raising (see authenticate())
        self.defer_hmac = False

    # --- input ------------------------------------------------------------------------
    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes. A malformed header raises here, as soon as its 24 bytes are in."""
        start = self._end
        end = start + len(data)
        if type(data) in _BYTES_TYPES and end <= len(self._buf) and self._big is None:
            # fast path: it fits in the shared buffer
            self._view[start:end] = data
            self._end = end
            if self._header is None and end - self._start >= HEADER_SIZE:
                self._read_header()
            return
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        total = len(view)
        pos = 0
        while pos < total:
            buf = self.get_buffer()
            n = min(len(buf), total - pos)
            buf[:n] = view[pos : pos + n]
            buf.release()
            pos += n
            self.buffer_updated(n)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """A writable, non-empty buffer for the next received bytes (asyncio BufferedProtocol style).

        Release the view (or drop it) before asking for the next one.
        """
        big = self._big
        fill = self._bigfill
        if big is not None and fill < self._bigsize:
            if not self._nosplit:
                del big  # (the split may give the buffer back: no reference of it here meanwhile)
                self._try_split()
                big = self._big
                assert big is not None
            split = self._split
            if split is not None:
                _value, vview, vstart, vend = split
                if fill < vend:
                    return vview[fill - vstart :]
                pos = fill - vend + vstart  # the rest of the body follows the head in the small buffer
                return memoryview(big)[pos:]
            if type(big) is bytearray:
                if fill == len(big):
                    grown = bytearray(min(self._bigsize, len(big) + max(len(big), self.BIG_PREALLOC)))
                    grown[:fill] = big
                    self._big = big = grown
                return memoryview(big)[fill:]
            return memoryview(big)[fill : min(self._bigsize, fill + self.BIG_PREALLOC)]
        end = self._end
        if len(self._buf) - end < _MIN_ROOM:
            self._make_room()
            end = self._end
        return self._view[end:]

    def buffer_updated(self, nbytes: int) -> None:
        """Tell the reader that ``nbytes`` were written into the last :meth:`get_buffer` view."""
        if self._big is not None and self._bigfill < self._bigsize:
            self._bigfill += nbytes
            return
        end = self._end = self._end + nbytes
        if self._header is None and end - self._start >= HEADER_SIZE:
            self._read_header()

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as part of a message."""
        return self._end - self._start + self._bigfill

    @property
    def idle(self) -> bool:
        """True when no partial message is buffered (a message boundary)."""
        return self._header is None and self._end == self._start

    def needed(self) -> int:
        """How many more bytes complete the current message (at least 1 when idle)."""
        header = self._header
        if header is None:
            return max(1, HEADER_SIZE - (self._end - self._start))
        if self._big is not None:
            return self._bigsize - self._bigfill
        return max(0, HEADER_SIZE + header[4] + header[6] - (self._end - self._start))

    # --- output -----------------------------------------------------------------------
    def next_message(self) -> Message | None:
        """The next complete message, or None until more bytes arrive."""
        header = self._header
        if header is None:
            if self._end - self._start < HEADER_SIZE:
                return None
            if self._big is None and not self.hmac_key:
                msg = self._take(self._start, self._end)  # e.g. a call pipelined with its handshake
                if msg is not None:
                    return msg
            header = self._read_header()
        if self._big is not None:
            return self._big_message(header)
        _tagver, msgtype, flags, seq, size, ser, ann_size, _reserved, _checksum = header
        start = self._start + HEADER_SIZE
        stop = start + ann_size + size
        end = self._end
        if end < stop:
            return None
        view = self._view
        if ann_size == 22 and _unpack_chunk(view, start) == _CORR_CHUNK:  # a correlation id only (common)
            annotations: dict[str, bytes] | None = {"CORR": view[start + 6 : start + 22].tobytes()}
            data: bytes | bytearray | memoryview = view[start + 22 : stop].tobytes()
        elif ann_size:
            annotations = _parse_annotations(view, start, start + ann_size)
            data = view[start + ann_size : stop].tobytes()
        else:
            annotations = None
            data = view[start:stop].tobytes()
        self._header = None
        if stop == end:
            self._start = self._end = 0
        else:
            self._start = stop
            if end - stop >= HEADER_SIZE:
                # switch early to a dedicated buffer if the next message is large; a bad header is
                # reported by the next call, this message is good
                try:
                    self._read_header()
                except errors.PyroError:
                    pass
        if self.hmac_key or flags & FLAGS_COMPRESSED or (annotations is not None and "HMAC" in annotations):
            return self._secured(msgtype, data, ser, flags, seq, annotations)
        # Message(...) without the __init__ call: this is the per-call path
        msg = _new_message(Message)
        msg.type = msgtype
        msg.flags = flags
        msg.seq = seq
        msg.serializer_id = ser
        msg.annotations = {} if annotations is None else annotations
        msg.data = data
        return msg

    def read_some(self, recv_into: Callable[[memoryview], int]) -> Message | None:
        """One read through ``recv_into`` (a socket's, say), then the first complete message, or None.

        A complete message already buffered is returned without a read.

        ConnectionClosedError when the read returns 0 (the end of the stream). The common case, an
        empty reader receiving exactly one small message, takes a short path with the same checks as
        :meth:`buffer_updated` and :meth:`next_message`; anything else goes through those.
        """
        if self._end or self._big is not None or self.hmac_key:
            msg = self.next_message()  # a whole message may be buffered already: no read then
            if msg is not None:
                return msg
            n = recv_into(self.get_buffer())
            if not n:
                raise errors.ConnectionClosedError("receiving: connection closed")
            self.buffer_updated(n)
            return self.next_message()
        return self.received(recv_into(self._view))  # the whole shared buffer: nothing is pending in it

    def received(self, n: int) -> Message | None:
        """``n`` bytes were read into the start of the whole shared buffer of an empty reader (its
        ``_view``, as :meth:`read_some` does): the first complete message, or None.

        ConnectionClosedError when ``n`` is 0 (the end of the stream)."""
        if n >= HEADER_SIZE:
            msg = self._take(0, n)
            if msg is not None:
                return msg
        elif not n:
            raise errors.ConnectionClosedError("receiving: connection closed")
        self._end = n
        if n >= HEADER_SIZE:
            self._read_header()
        return self.next_message()

    def _take(self, start: int, end: int) -> Message | None:
        """The short path: the message at ``start`` of the shared buffer (``end`` bytes in it, at least a
        header's worth) when it is whole, uncompressed and has no HMAC; with the same checks as
        :meth:`buffer_updated` and :meth:`next_message`. None (nothing consumed) for anything else, which
        the general path then handles."""
        tag_version, msgtype, flags, seq, size, ser, ann_size, _reserved, checksum = _unpack_header(self._buf, start)
        body = start + HEADER_SIZE
        stop = body + ann_size + size
        if not (
            end >= stop
            and tag_version == _TAG_VERSION
            and checksum == (msgtype + flags + seq + size + ser + ann_size + _BASE) & 0xFFFF
            and size >= 0
            and 0 < msgtype < 7
            and not flags & FLAGS_COMPRESSED
            and not 0 < self.max_size < size + ann_size
        ):
            return None
        view = self._view
        if not ann_size:
            annotations: dict[str, bytes] = {}
            data = view[body:stop].tobytes()
        elif ann_size == 22 and _unpack_chunk(view, body) == _CORR_CHUNK:
            annotations = {"CORR": view[body + 6 : body + 22].tobytes()}
            data = view[body + 22 : stop].tobytes()
        else:
            annotations = _parse_annotations(view, body, body + ann_size)
            if "HMAC" in annotations:  # refused (or deferred) by the general path
                return None
            data = view[body + ann_size : stop].tobytes()
        if stop < end:  # more came (a pipelined message): taken from here next
            self._start = stop
            self._end = end
        elif start:
            self._start = self._end = 0
        msg = _new_message(Message)
        msg.type = msgtype
        msg.flags = flags
        msg.seq = seq
        msg.serializer_id = ser
        msg.annotations = annotations
        msg.data = data
        return msg

    def read_message(self, recv_into: Callable[[memoryview], int]) -> Message:
        """Read through ``recv_into`` until a whole message is here (one already buffered needs no read).

        ConnectionClosedError when the stream ends first.
        """
        msg = self.next_message() if self._end or self._big is not None else None
        while msg is None:
            try:
                msg = self.read_some(recv_into)
            except errors.ConnectionClosedError:
                if self.pending:
                    raise errors.ConnectionClosedError("receiving: not enough data") from None
                raise
        return msg

    def recycle(self, msg: Message) -> None:
        """The caller is done with ``msg.data``: its large-body buffer may serve a later message.

        ``msg.data`` becomes empty. The buffer is kept for reuse only when nothing else refers to it
        (no view of it survives); small messages and anything else are left alone.
        """
        data = msg.data
        if type(data) is not memoryview or _getrefcount is None:
            return
        buf = data.obj
        if type(buf) is not _MMAP_TYPE:
            return
        msg.data = b""
        try:
            data.release()
        except BufferError:  # still exported somewhere: not ours to reuse
            return
        del data
        if _getrefcount(buf) == 2:  # this function's reference and getrefcount's argument
            big_buffers.give(buf)

    # --- internals --------------------------------------------------------------------
    def _big_message(self, header: tuple[Any, ...]) -> Message | None:
        big = self._big
        assert big is not None
        if self._bigfill < self._bigsize:
            return None
        _tagver, msgtype, flags, seq, size, ser, ann_size, _reserved, _checksum = header
        self._big = None
        self._bigfill = self._bigsize = 0
        self._header = None
        split = self._split
        if split is not None:
            self._split = None
            value, vview, vstart, _vend = split
            vview.release()  # no writable view of the value survives
            with memoryview(big) as view:
                annotations = _parse_annotations(view, 0, ann_size) if ann_size else None
                body: Any = SplitBody(view[ann_size:vstart].tobytes(), value, view[vstart:].tobytes())
            return self._secured(msgtype, body, ser, flags, seq, annotations)
        view = memoryview(big)
        annotations = _parse_annotations(view, 0, ann_size) if ann_size else None
        data: bytes | bytearray | memoryview
        if type(big) is bytearray:
            data = view[ann_size:] if ann_size else big
        else:  # a memory map, maybe a reused one larger than this body
            data = view[ann_size : ann_size + size]
        if self._end - self._start >= HEADER_SIZE:
            try:
                self._read_header()
            except errors.PyroError:
                pass
        return self._secured(msgtype, data, ser, flags, seq, annotations)

    def _secured(
        self, msgtype: int, data: bytes | bytearray | memoryview, ser: int, flags: int, seq: int,
        annotations: dict[str, bytes] | None,
    ) -> Message:
        """The Message after its HMAC check and decompression (deferred HMAC: unverified, still compressed)."""
        if self.hmac_key or (annotations is not None and "HMAC" in annotations):
            if self.defer_hmac:  # the receiver calls authenticate()
                return Message(msgtype, data, ser, flags, seq, annotations)
            self._check_hmac(data, annotations)
        if flags & FLAGS_COMPRESSED:
            data = self._decompress(data)
            flags &= ~FLAGS_COMPRESSED
        return Message(msgtype, data, ser, flags, seq, annotations)

    def _try_split(self) -> None:
        """Switch the large body in progress to a split receive when its serializer locates one large
        ``bytes`` value in the received prefix (see :func:`register_splitter`): the value's bytes then
        go straight into a bytes object of their own, the few others into a small buffer."""
        header = self._header
        big = self._big
        assert header is not None and big is not None
        _tagver, msgtype, flags, _seq, size, ser, ann_size, _reserved, _checksum = header
        fill = self._bigfill
        if fill < ann_size + 64 and fill < self._bigsize:
            return  # too little of the payload so far: decide after the next read
        self._nosplit = True  # decided now, either way
        locate = _SPLITTERS.get(ser)
        if (
            locate is None
            or self.hmac_key
            or flags & _NO_SPLIT_FLAGS
            or (msgtype != MSG_INVOKE and msgtype != MSG_RESULT)
            or _writable_bytes is None
        ):
            return
        with memoryview(big) as view:
            if ann_size:
                try:
                    if "HMAC" in _parse_annotations(view, 0, ann_size):
                        return
                except errors.ProtocolError:
                    return  # reported when the message is complete
            try:
                located = locate(msgtype, view[ann_size : min(fill, ann_size + _SPLIT_PREFIX)], size)
            except Exception:  # noqa: BLE001 - a splitter's failure only means: no split
                located = None
            if located is None:
                return
            offset, length = located
            vstart = ann_size + offset
            vend = vstart + length
            tail = self._bigsize - vend
            if length < SPLIT_THRESHOLD or offset < 0 or vstart > fill or tail < 0 or tail > _LARGE_BODY:
                return
            try:
                value, vview = _writable_bytes(length)
            except (MemoryError, OverflowError):
                return
            got = min(fill, vend) - vstart
            vview[:got] = view[vstart : vstart + got]
            rest = bytearray(vstart + tail)  # the body without the value
            rest[:vstart] = view[:vstart]
            if fill > vend:
                rest[vstart : vstart + fill - vend] = view[vend:fill]
        self._big = rest
        self._split = (value, vview, vstart, vend)
        if type(big) is _MMAP_TYPE and _getrefcount is not None and _getrefcount(big) == 2:
            big_buffers.give(big)  # not needed after all: a spare for the next large body

    def _fit(self, size: int) -> None:
        """Make room for a message of ``size`` bytes starting at ``_start``: move it to the front of the
        shared buffer, or grow the buffer (to at least :attr:`INITIAL` bytes) when it is too small."""
        start, end = self._start, self._end
        pending = end - start
        if size > len(self._buf):
            grown = bytearray(max(size, self.INITIAL, pending))
            grown[:pending] = self._view[start:end]
            self._buf = grown
            self._view = memoryview(grown)
        else:
            self._view[:pending] = self._buf[start:end]
        self._start, self._end = 0, pending

    def _make_room(self) -> None:
        """Move the unconsumed bytes to the front of the shared buffer; grow it when it is full."""
        start, end = self._start, self._end
        pending = end - start
        if start:
            self._view[:pending] = self._buf[start:end]
            self._start, self._end = 0, pending
        if pending == len(self._buf):  # full of unconsumed messages: grow (a new object, so no export blocks it)
            grown = bytearray(2 * pending)
            grown[:pending] = self._buf
            self._buf = grown
            self._view = memoryview(grown)

    def _read_header(self) -> tuple[Any, ...]:
        start = self._start
        header = _unpack_header(self._buf, start)
        tag_version, msgtype, flags, seq, size, ser, ann_size, _reserved, checksum = header
        if (
            tag_version != _TAG_VERSION
            or checksum != (msgtype + flags + seq + size + ser + ann_size + _BASE) & 0xFFFF
            or size < 0
            or not 0 < msgtype < 7
        ):
            _check_header(header)  # raises the precise error
        body = size + ann_size
        if 0 < self.max_size < body:
            raise errors.MessageTooLargeError(f"max message size exceeded ({body} where max={self.max_size})")
        self._header = header
        if body <= _LARGE_BODY:
            if start + HEADER_SIZE + body > len(self._buf):
                self._fit(HEADER_SIZE + body)
        else:
            have = self._end - start - HEADER_SIZE
            if have < body:
                # a dedicated buffer for the body: no regrowth of the shared buffer, no second copy
                big = big_buffers.take(body)
                if big is None:
                    big = bytearray(min(body, max(have, self.BIG_PREALLOC)))
                big[:have] = self._view[start + HEADER_SIZE : self._end]
                self._big = big
                self._bigfill = have
                self._bigsize = body
                self._split = None
                self._nosplit = _writable_bytes is None
                self._start = self._end = 0
        return header

    def authenticate(self, msg: Message) -> Message:
        """Check the HMAC of a message handed out by :attr:`defer_hmac` mode, then decompress it.

        Raises SecurityError (``message hmac mismatch``, ``hmac key config not symmetric``); nothing is
        decompressed before the HMAC matched. Only for messages handed out unverified (the HMAC covers
        the wire payload, so a message the reader already decompressed cannot be checked again).
        """
        annotations = msg.annotations
        if self.hmac_key or "HMAC" in annotations:
            self._check_hmac(msg.data, annotations)
        if msg.flags & FLAGS_COMPRESSED:
            msg.data = self._decompress(msg.data)
            msg.flags &= ~FLAGS_COMPRESSED
        return msg

    def _check_hmac(self, data: bytes | bytearray | memoryview, annotations: Mapping[str, bytes] | None) -> None:
        received = annotations.get("HMAC") if annotations else None
        if received is not None and self.hmac_key:
            assert annotations is not None
            if not hmac.compare_digest(received, hmac_digest(self.hmac_key, data, annotations)):
                raise errors.SecurityError("message hmac mismatch")
        elif (received is not None) != bool(self.hmac_key):
            raise errors.SecurityError("hmac key config not symmetric")

    def _decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        limit = self.max_size
        try:
            inflater = zlib.decompressobj()
            if limit > 0:
                out = inflater.decompress(data, limit + 1)
                if len(out) > limit:
                    raise errors.MessageTooLargeError(f"decompressed message exceeds max size {limit}")
            else:
                out = inflater.decompress(data)
        except zlib.error as exc:
            raise errors.ProtocolError(f"invalid compressed payload: {exc}") from None
        if not inflater.eof:
            raise errors.ProtocolError("compressed payload is truncated")
        return out
