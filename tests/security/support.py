"""Helpers of the security tests: a recording service and daemon, a daemon runner, a raw wire client
and a recording TCP relay (to see the flags that really travel)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pyroplug.core import protocol
from pyroplug.core.config import Config
from pyroplug.core.daemon import Daemon
from pyroplug.core.expose import behavior
from pyroplug.core.protocol import Message, MessageReader
from pyroplug.core.proxy import Proxy
from pyroplug.core.uri import URI

SERVERTYPES = ("thread", "multiplex")
KEY = "s\u00e9cret key"  # not ASCII: the str is used as its UTF-8 bytes
KEY_BYTES = KEY.encode("utf-8")
MARSHAL_ID = 3
SERPENT_ID = 1


class Log(list):
    """What user code ran on a daemon (calls, instance creations, handshake validations), thread-safe appends."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def add(self, entry: Any) -> None:
        with self.lock:
            self.append(entry)


class Recorder:
    """The service: records every call in the daemon's :class:`Log`."""

    def __init__(self, log: Log) -> None:
        self._log = log

    def add(self, a: Any, b: Any) -> Any:
        self._log.add(("add", a, b))
        return a + b

    def echo(self, value: Any) -> Any:
        self._log.add(("echo", type(value).__name__, len(value) if hasattr(value, "__len__") else None))
        return value

    def fail(self, message: str) -> None:
        self._log.add(("fail", message))
        raise ValueError(message)

    def count(self, n: int) -> Any:
        self._log.add(("count", n))
        yield from range(n)


class RecordingDaemon(Daemon):
    """A Daemon whose handshake validation is user code that is recorded too (and can be scripted)."""

    log: Log
    disconnects: list[Any]
    annotation_calls: list[int]
    #: validateHandshake(data) -> response, or raise; default: Pyro4's "hello"
    validator: Callable[[Any, Any], Any] | None = None

    def validateHandshake(self, conn: Any, data: Any) -> Any:  # noqa: N802 - Pyro4 API
        self.log.add(("handshake", data))
        if self.validator is not None:
            return self.validator(conn, data)
        return super().validateHandshake(conn, data)

    def clientDisconnect(self, conn: Any) -> None:  # noqa: N802 - Pyro4 API
        self.disconnects.append(conn)

    def annotations(self) -> dict[str, bytes]:
        """User code too: counted (in ``annotation_calls``), adds ``XREC`` to every reply it is asked for."""
        self.annotation_calls.append(1)
        return {"XREC": b"1"}


def counted_class(log: Log) -> type:
    """A session-mode class whose instance creation is recorded (an instance is user code too)."""

    @behavior(instance_mode="session")
    class Counted:
        def __init__(self) -> None:
            log.add(("instance",))

        def ping(self) -> str:
            log.add(("ping",))
            return "pong"

    return Counted


@dataclass
class Served:
    """A daemon serving in a background thread, with the URIs of its recorded objects."""

    daemon: RecordingDaemon
    config: Config
    log: Log
    uri: URI
    counted_uri: URI
    thread: threading.Thread
    extra: dict[str, Any] = field(default_factory=dict)

    def calls(self) -> list[Any]:
        """The recorded entries other than handshake validations."""
        return [entry for entry in self.log if entry[0] != "handshake"]


def make_config(servertype: str | None = None, **items: Any) -> Config:
    """A fresh Config (no environment) with the given items."""
    cfg = Config()
    if servertype is not None:
        cfg.SERVERTYPE = servertype
    cfg.POLLTIMEOUT = 0.5
    for name, value in items.items():
        setattr(cfg, name, value)
    return cfg


@contextlib.contextmanager
def serving(
    servertype: str,
    *,
    hmac: bytes | str | None = None,
    unixsocket: str | None = None,
    host: str = "127.0.0.1",
    daemon_class: type[RecordingDaemon] = RecordingDaemon,
    validator: Callable[[Any, Any], Any] | None = None,
    **items: Any,
) -> Iterator[Served]:
    """Run a RecordingDaemon of ``servertype`` (config ``items``) in a thread; always closed afterwards."""
    cfg = make_config(servertype, **items)
    daemon = daemon_class(unixsocket=unixsocket, config=cfg) if unixsocket else daemon_class(host=host, config=cfg)
    log = Log()
    daemon.log = log
    daemon.disconnects = []
    daemon.annotation_calls = []
    daemon.validator = validator
    daemon._pyroHmacKey = hmac
    uri = daemon.register(Recorder(log), "recorder")
    counted_uri = daemon.register(counted_class(log), "counted")
    thread = threading.Thread(target=daemon.requestLoop, name=f"security-{servertype}", daemon=True)
    thread.start()
    try:
        yield Served(daemon, cfg, log, uri, counted_uri, thread)
    finally:
        daemon.shutdown()
        thread.join(10)
        daemon.close()


def proxy(uri: URI | str, hmac: bytes | str | None = None, timeout: float = 10.0, cls: type[Proxy] = Proxy,
          **items: Any) -> Proxy:
    """A Proxy with its own config (``items``), an HMAC key and a call timeout."""
    cfg = make_config(None, COMMTIMEOUT=timeout, **items)
    p = cls(uri, config=cfg)
    p._pyroHmacKey = hmac
    return p


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` passed; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


# --- raw wire ------------------------------------------------------------------------------------------
class RawClient:
    """A hand-driven Pyro connection: send encoded messages, read decoded ones (or see the connection close)."""

    def __init__(self, address: Any, hmac_key: bytes | None = None, sock: Any = None, timeout: float = 10.0,
                 max_size: int = 0) -> None:
        if sock is None:
            family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(address)
        sock.settimeout(timeout)
        self.sock = sock
        self.reader = MessageReader(max_size, hmac_key)

    @classmethod
    def to(cls, uri: URI, **kwargs: Any) -> RawClient:
        return cls((uri.host, uri.port), **kwargs)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_message(self, msgtype: int, data: bytes, serializer_id: int = MARSHAL_ID, flags: int = 0, seq: int = 0,
                     annotations: dict[str, bytes] | None = None, hmac_key: bytes | None = None,
                     compress: bool = False) -> None:
        self.send(protocol.encode(msgtype, data, serializer_id, flags, seq, annotations, hmac_key, compress))

    def receive(self) -> Message | None:
        """The next message, or None when the peer closed the connection first."""
        while True:
            msg = self.reader.next_message()
            if msg is not None:
                return msg
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                return None
            if not chunk:
                return None
            self.reader.feed(chunk)

    def closed_by_peer(self) -> bool:
        """True when the peer closes the connection without sending anything (more)."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except ssl.SSLError:
            return True
        return data == b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def marshal_dumps(value: Any) -> bytes:
    import marshal

    return marshal.dumps(value)


def marshal_loads(data: Any) -> Any:
    import marshal

    return marshal.loads(bytes(data))


def connect_payload(object_id: str = "recorder", handshake: Any = "hello") -> bytes:
    """A marshal-serialized CONNECT payload asking for metadata of ``object_id``."""
    return marshal_dumps({"handshake": handshake, "object": object_id})


def invoke_payload(object_id: str, method: str, *args: Any) -> bytes:
    """A marshal-serialized INVOKE payload."""
    return marshal_dumps((object_id, method, args, {}))


def handshake(client: RawClient, hmac_key: bytes | None = None, object_id: str = "recorder") -> Message | None:
    """Send a METADATA CONNECT (marshal) and return the reply."""
    client.send_message(protocol.MSG_CONNECT, connect_payload(object_id), MARSHAL_ID,
                        protocol.FLAGS_META_ON_CONNECT, 0, None, hmac_key)
    return client.receive()


# --- a recording relay -----------------------------------------------------------------------------------
class Tap:
    """A TCP relay on 127.0.0.1 in front of ``target`` that records the bytes of each direction.

    Point a proxy at :meth:`uri_for` instead of the daemon; :meth:`headers` then decodes the message
    headers that really travelled (type, flags, serializer, data size) per direction.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.upstream = bytearray()  # client -> daemon
        self.downstream = bytearray()  # daemon -> client
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, name="tap-accept", daemon=True)
        accept.start()
        self._threads.append(accept)

    def uri_for(self, uri: URI) -> URI:
        return URI(f"PYRO:{uri.object}@127.0.0.1:{self.port}")

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            server = socket.create_connection(self.target)
            for src, dst, record in ((client, server, self.upstream), (server, client, self.downstream)):
                t = threading.Thread(target=self._pump, args=(src, dst, record), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, record: bytearray) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                record += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def headers(stream: bytes | bytearray) -> list[tuple[int, int, int, int]]:
        """(type, flags, serializer id, data size) of every complete message in a recorded stream."""
        result = []
        pos = 0
        while len(stream) - pos >= protocol.HEADER_SIZE:
            msgtype, flags, _seq, size, ser, ann_size = protocol.parse_header(bytes(stream[pos:pos + protocol.HEADER_SIZE]))
            end = pos + protocol.HEADER_SIZE + ann_size + size
            if end > len(stream):
                break
            result.append((msgtype, flags, ser, size))
            pos = end
        return result

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for t in self._threads:
            t.join(2)

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
