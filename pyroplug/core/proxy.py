"""Proxy: the client-side stand-in for a remote object.

The serializer and transport are resolved once, when the proxy connects; a call is then one
serialize, one framed send and one buffered receive, under a lock that keeps send and receive
atomic so one proxy may be shared between threads.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from pyroplug.core import errors
from pyroplug.core.blob import SerializedBlob, blob_annotation
from pyroplug.core.config import Config
from pyroplug.core.config import config as global_config
from pyroplug.core.constants import DAEMON_NAME
from pyroplug.core.context import current_context
from pyroplug.core.expose import PRIVATE_DUNDERS
from pyroplug.core.gather import THRESHOLD as _GATHER_THRESHOLD
from pyroplug.core.gather import call_parts
from pyroplug.core.lane import SLOW, open_lane
from pyroplug.core.protocol import (
    _BASE,
    _CORR_CHUNK,
    _TAG_VERSION,
    FLAGS_BATCH,
    FLAGS_EXCEPTION,
    FLAGS_ITEMSTREAMRESULT,
    FLAGS_KEEPSERIALIZED,
    FLAGS_META_ON_CONNECT,
    FLAGS_ONEWAY,
    HEADER_SIZE,
    MSG_CONNECT,
    MSG_CONNECTFAIL,
    MSG_CONNECTOK,
    MSG_INVOKE,
    MSG_RESULT,
    MessageReader,
    _unpack_chunk,
    _unpack_header,
    encode_gather,
    encode_parts,
    encode_plain,
)
from pyroplug.core.registry import get_registry
from pyroplug.core.serializer import wire_class
from pyroplug.core.transport import map_oserror, receive_error
from pyroplug.core.uri import URI
from pyroplug.core.wirelog import wrap_connection
from pyroplug.core.workers import call_gates as _call_gates

if TYPE_CHECKING:
    from pyroplug.core.serializer import Serializer
    from pyroplug.core.transport import Connection, Transport

__all__ = ["Proxy"]

log = logging.getLogger(__name__)

#: attribute names that live on the proxy itself, never forwarded to the remote object
_LOCAL = frozenset(
    """__getnewargs__ __getnewargs_ex__ __getinitargs__ _pyroConnection _pyroUri _pyroOneway _pyroMethods
    _pyroAttrs _pyroTimeout _pyroSeq _pyroHmacKey _pyroRawWireResponse _pyroHandshake _pyroMaxRetries
    _pyroSerializer _pyroConfig _async _hmac _timeout _lock _ser _object_id _async_pool _lane""".split()
)
_get_ident = threading.get_ident
_RETRYABLE = (errors.ConnectionClosedError, errors.TimeoutError)
#: remote errors after which a stock Pyro4 daemon drops the connection: release it, the next call reconnects
_DROPPED_AFTER = (errors.CommunicationError, errors.SecurityError)
#: URI fields -> the plain (not oneway) method names its object exposed in the last handshake of this
#: process. A new proxy's first call to one of them sends the handshake and the call together (one round
#: trip instead of two); the handshake still brings the object's current metadata, which replaces this.
_known_methods: dict[tuple, frozenset[str]] = {}
_KNOWN_METHODS_MAX = 1024
_NO_METHODS: frozenset[str] = frozenset()


def _autoproxy() -> Any:
    """The daemon's autoproxy hook (imported on first use: the daemon module imports this one)."""
    global _autoproxy_hook
    if _autoproxy_hook is None:
        from pyroplug.core.daemon import _autoproxy as hook

        _autoproxy_hook = hook
    return _autoproxy_hook


_autoproxy_hook: Any = None
#: (registry id, serializer name) -> the registry, for the SERIALIZER values new proxies found registered
_known_serializers: dict[tuple[int, str], Any] = {}


def _send_connecting(conn: Connection, uri: URI, data: bytes) -> None:
    """Send the handshake (and maybe the first call); errors read ``cannot connect to LOCATION: ...``."""
    try:
        conn.send(data)
    except errors.CommunicationError as exc:
        raise type(exc)(f"cannot connect to {uri.location}: {exc}") from exc


#: (registry id, location kind, config id) -> (registry, its transport instance): transports keep
#: nothing but their config, so proxies share them
_transports: dict[tuple[int, str, int], tuple[Any, Transport]] = {}


def _transport(kind: str, cfg: Config) -> Transport:
    """The transport for locations of ``kind`` under ``cfg`` (one instance per registry, kind and config)."""
    registry = get_registry()
    known = _transports.get((id(registry), kind, id(cfg)))
    if known is not None and known[0] is registry and known[1].config is cfg:
        return known[1]
    transport = registry.transport_for(kind)(cfg)
    if len(_transports) >= 64:
        _transports.clear()
    _transports[(id(registry), kind, id(cfg))] = (registry, transport)
    return transport


def _check_reply(msg: Any, seq: int, sid: int) -> None:
    """ProtocolError/SerializeError unless ``msg`` is the RESULT of request ``seq`` in serializer ``sid``."""
    if msg.type != MSG_RESULT:
        raise errors.ProtocolError(f"invalid msg type {msg.type} received")
    if msg.seq != seq:
        raise errors.ProtocolError(f"invoke: reply sequence out of sync, got {msg.seq} expected {seq}")
    if msg.serializer_id != sid:
        raise errors.SerializeError(f"invalid serializer in response: {msg.serializer_id}")


def _uri_key(uri: URI) -> tuple:
    return (uri.protocol, uri.object if type(uri.object) is str else None, uri.host, uri.port, uri.sockname)


class _Members:
    """An object's exposed members as a handshake reported them: immutable, so proxies can share one."""

    __slots__ = ("methods", "oneway", "attrs", "plain")

    def __init__(self, metadata: Any) -> None:
        """From a metadata dict (``methods``, ``oneway``, ``attrs``); ProtocolError when it is malformed."""
        try:
            self.methods = frozenset(metadata["methods"])
            self.oneway = frozenset(metadata["oneway"])
            self.attrs = frozenset(metadata["attrs"])
        except (KeyError, TypeError) as exc:
            raise errors.ProtocolError(f"invalid metadata in handshake response: {exc!r}") from None
        #: the methods a new proxy may call along with its handshake (see _known_methods)
        self.plain = self.methods.difference(self.oneway) if self.oneway else self.methods


#: (serializer id, CONNECTOK data) -> (handshake response, _Members): a daemon answers every handshake
#: for the same object alike, so a new proxy's answer is decoded once per process, not once per connect
_connect_answers: dict[tuple[int, bytes], tuple[Any, _Members]] = {}
_CONNECT_ANSWERS_MAX = 256
#: (serializer class and protocol, handshake, object id, seq, COMPRESSION, MAX_MESSAGE_SIZE) -> a CONNECT
_hellos: dict[tuple, bytes] = {}
#: handshake responses that may be shared between proxies (immutable)
_SHAREABLE = frozenset({str, int, float, bool, bytes, type(None)})


def _connect_answer(ser: Serializer, sid: int, data: Any) -> tuple[Any, _Members]:
    """The handshake response and members in a CONNECTOK with metadata (decoded once per distinct answer)."""
    key = (sid, data) if type(data) is bytes else None
    if key is not None:
        known = _connect_answers.get(key)
        if known is not None:
            return known
    reply = ser.loads(data)
    try:
        response, meta = reply["handshake"], reply["meta"]
    except (KeyError, TypeError) as exc:
        raise errors.ProtocolError(f"invalid handshake response: {exc!r}") from None
    answer = (response, _Members(meta))
    if key is not None and type(response) in _SHAREABLE:
        if len(_connect_answers) >= _CONNECT_ANSWERS_MAX:
            _connect_answers.clear()
        _connect_answers[key] = answer
    return answer


def _remember(uris: tuple[URI, ...], plain: frozenset[str]) -> None:
    """Note the plain methods of the object at each of ``uris`` (see _known_methods)."""
    if len(_known_methods) >= _KNOWN_METHODS_MAX:
        _known_methods.clear()
    for uri in uris:
        _known_methods[_uri_key(uri)] = plain


def _remember_methods(uris: tuple[URI, ...], metadata: dict[str, Any]) -> None:
    """Note the plain methods in ``metadata`` (a metadata dict; ignored when malformed)."""
    try:
        members = _Members(metadata)
    except errors.ProtocolError:
        return
    _remember(uris, members.plain)


class _RemoteMethod:
    """A bound remote method: calling it performs the remote call (with MAX_RETRIES retries)."""

    __slots__ = ("_proxy", "_name")

    def __init__(self, proxy: Proxy, name: str) -> None:
        self._proxy = proxy
        self._name = name

    def __getattr__(self, name: str) -> _RemoteMethod:
        return _RemoteMethod(self._proxy, f"{self._name}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        proxy = self._proxy
        try:
            lane = proxy._lane
        except ReferenceError:  # a cached method's proxy (held weakly) is gone
            raise errors.PyroError(f"the proxy of remote method {self._name!r} no longer exists; keep a reference to it") from None
        attempt = 0
        while True:
            try:
                if lane:  # connected: the common call takes the proxy's lane
                    result = lane(self._name, args, kwargs)
                    if result is not SLOW:
                        return result
                return proxy._pyroInvoke(self._name, args, kwargs)
            except _RETRYABLE:
                attempt += 1
                if attempt > proxy._pyroMaxRetries:
                    raise
                lane = None

    def __repr__(self) -> str:
        try:
            return f"<remote method {self._name!r} of {self._proxy._pyroUri}>"
        except ReferenceError:
            return f"<remote method {self._name!r} of a proxy that no longer exists>"


class _WeakRemoteMethod(_RemoteMethod):
    """The cached form of a remote method: it holds its proxy weakly (keep the proxy while you use it)."""

    __slots__ = ()

    def __init__(self, proxy: Proxy, name: str) -> None:
        # a weakref.proxy forwards attribute access in C: no Python call per remote call to dereference it
        self._proxy = weakref.proxy(proxy)
        self._name = name


@wire_class("Pyro4.core.Proxy")
class Proxy:
    """A proxy for the remote object at ``uri`` (a URI or its text: PYRO:, PYRONAME: or PYROMETA:).

    Remote methods and exposed properties are used as if local. The connection is made on first use
    (or by :meth:`_pyroBind`) and kept until :meth:`_pyroRelease` or the end of a ``with`` block.
    """

    def __init__(self, uri: str | URI, connected_socket: Any = None, *, config: Config | None = None) -> None:
        if connected_socket is not None:
            raise errors.PyroError("connected_socket proxies are not supported yet")
        if isinstance(uri, str):
            uri = URI(uri)
        elif not isinstance(uri, URI):
            raise TypeError("expected Pyro URI")
        # no copy: like Pyro4's, a proxy reads the (global or given) config when it connects and calls
        cfg = config or global_config
        # the other per-proxy state starts as the class attributes below (set per instance on change)
        own = self.__dict__
        own["_pyroConfig"] = cfg
        own["_pyroUri"] = uri
        own["_pyroMethods"] = set()
        own["_pyroAttrs"] = set()
        own["_pyroOneway"] = set()
        own["_pyroMaxRetries"] = cfg.MAX_RETRIES
        own["_timeout"] = cfg.COMMTIMEOUT
        own["_lock"] = threading.RLock()
        registry = get_registry()
        if _known_serializers.get((id(registry), cfg.SERIALIZER)) is not registry:  # fail early on an unknown one
            registry.serializer(cfg.SERIALIZER)
            if len(_known_serializers) >= 64:
                _known_serializers.clear()
            _known_serializers[(id(registry), cfg.SERIALIZER)] = registry

    _pyroConnection: Any = None  # a Connection while connected
    _pyroSerializer: str | None = None
    _pyroSeq: int = 0
    _pyroRawWireResponse: bool = False
    _pyroHandshake: Any = "hello"
    _hmac: bytes | None = None
    _async: bool = False
    _ser: Serializer | None = None
    _object_id: Any = None
    #: the connection's call lane (see pyroplug.core.lane); None: not opened yet, False: none for this connection
    _lane: Any = None
    #: whether calls may take the lane: no call, request or response annotation hook overridden
    _plain_calls: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._plain_calls = (cls._pyroAnnotations is Proxy._pyroAnnotations
                            and cls._pyroResponseAnnotations is Proxy._pyroResponseAnnotations
                            and cls._pyroInvoke is Proxy._pyroInvoke)

    # ------------------------------------------------------------------ attributes
    def __getattr__(self, name: str) -> Any:
        if name in _LOCAL or name in PRIVATE_DUNDERS:
            raise AttributeError(name)
        metadata = self._pyroConfig.METADATA
        if metadata and not self._pyroMethods and not self._pyroAttrs:
            if (self._pyroConnection is None and not self._async
                    and name in _known_methods.get(_uri_key(self._pyroUri), _NO_METHODS)):
                # a method of this object in an earlier handshake: connect with the first call (see _pyroInvoke)
                self.__dict__[name] = _WeakRemoteMethod(self, name)
                return _RemoteMethod(self, name)
            self._pyroGetMetadata()
        if name in self._pyroAttrs:
            return self._pyroInvoke("__getattr__", (name,), None)
        if metadata and name not in self._pyroMethods:
            raise AttributeError(f"remote object '{self._pyroUri}' has no exposed attribute or method '{name}'")
        if self._async:
            from pyroplug.core.asyncproxy import AsyncRemoteMethod

            return AsyncRemoteMethod(self, name)
        # Later lookups find a cached method in the instance dict and skip __getattr__. The cached one
        # refers to this proxy weakly (no reference cycle: a dropped proxy closes its connection at
        # once); the one returned now is strong, so ``Proxy(uri).method()`` keeps its proxy alive.
        self.__dict__[name] = _WeakRemoteMethod(self, name)
        return _RemoteMethod(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LOCAL:
            if name == "_pyroRawWireResponse":  # the lane gives results, not messages
                self.__dict__.pop("_lane", None)
            object.__setattr__(self, name, value)
            return
        metadata = self._pyroConfig.METADATA
        if metadata and not self._pyroMethods and not self._pyroAttrs:
            self._pyroGetMetadata()
        if name in self._pyroAttrs:
            self._pyroInvoke("__setattr__", (name, value), None)
            return
        if metadata:
            raise AttributeError(f"remote object '{self._pyroUri}' has no exposed attribute '{name}'")
        object.__setattr__(self, name, value)

    @property
    def _pyroTimeout(self) -> float | None:  # noqa: N802 - Pyro4 API
        """Timeout in seconds for connecting and for calls (None or 0: wait forever)."""
        return self._timeout

    @_pyroTimeout.setter
    def _pyroTimeout(self, value: float | None) -> None:  # noqa: N802
        object.__setattr__(self, "_timeout", value)
        if self._pyroConnection is not None:
            self._pyroConnection.settimeout(value)

    @property
    def _pyroHmacKey(self) -> bytes | None:  # noqa: N802 - Pyro4 API
        """The HMAC key this proxy signs and checks messages with (a str is encoded as UTF-8)."""
        return self._hmac

    @_pyroHmacKey.setter
    def _pyroHmacKey(self, value: bytes | str | None) -> None:  # noqa: N802
        self.__dict__.pop("_lane", None)
        object.__setattr__(self, "_hmac", value.encode("utf-8") if isinstance(value, str) else value)

    # ------------------------------------------------------------------ connection
    def _pyroBind(self) -> bool:  # noqa: N802
        """Connect now, replacing a PYRONAME/PYROMETA URI by the resolved PYRO one; True if newly connected."""
        return self._connect(replace_uri=True)

    def _pyroRelease(self) -> None:  # noqa: N802
        """Close the connection (the next call reconnects), and those of idle async clones."""
        with self._lock:
            conn = self._pyroConnection
            if conn is not None:
                object.__setattr__(self, "_pyroConnection", None)
                self.__dict__.pop("_lane", None)
                conn.close()
        if "_async_pool" in self.__dict__:
            from pyroplug.core.asyncproxy import release_clones

            release_clones(self)

    def _pyroReconnect(self, tries: int = 100000000) -> None:  # noqa: N802
        """Release, then try to connect again (every 2 seconds, ``tries`` times).

        A PYRONAME/PYROMETA proxy is resolved again at the name server on every try (the proxy keeps
        its PYRONAME URI unless :meth:`_pyroBind` replaced it), so it follows an object that moved;
        a name that is (still) unknown, or an unreachable name server, counts as a failed try.
        """
        self._pyroRelease()
        while tries:
            try:
                self._connect()
                return
            except (errors.CommunicationError, errors.NamingError):
                tries -= 1
                if tries:
                    time.sleep(2)
        raise errors.ConnectionClosedError("failed to reconnect")

    def _connect(self, replace_uri: bool = False) -> bool:
        with self._lock:
            if self._pyroConnection is not None:
                return False
            conn, uri, hello = self._open()
            try:
                _send_connecting(conn, uri, hello)
                response = self._handshake_reply(conn, uri)
            except BaseException:
                conn.close()
                raise
            self._adopt(conn, uri, replace_uri)
            try:
                self._pyroValidateHandshake(response)  # may look at self._pyroConnection (e.g. getpeercert)
            except BaseException:  # refused by the client: the connection closes, the exception propagates
                object.__setattr__(self, "_pyroConnection", None)
                self.__dict__.pop("_lane", None)
                conn.close()
                raise
            if self._pyroConfig.METADATA and not self._pyroMethods and not self._pyroAttrs:
                self._pyroGetMetadata(uri.object)
            return True

    def _open(self) -> tuple[Connection, URI, bytes]:
        """Resolve, pick the serializer, encode the handshake and connect (nothing sent yet).

        Returns the new connection, the (resolved) URI and the handshake message.
        """
        uri = self._prepare()
        hello = self._hello(uri)
        return self._dial(uri), uri, hello

    def _prepare(self) -> URI:
        """The URI to connect to (PYRONAME/PYROMETA resolved); sets the proxy's serializer and object id."""
        cfg = self._pyroConfig
        uri = self._pyroUri
        if uri.protocol != "PYRO":
            from pyroplug.core.nsclient import resolve

            uri = resolve(uri, self._hmac)
        ser = get_registry().serializer(self._pyroSerializer or cfg.SERIALIZER)(cfg)
        ser.replace = _autoproxy_hook or _autoproxy()
        object.__setattr__(self, "_ser", ser)
        object.__setattr__(self, "_object_id", uri.object)
        return uri

    def _hello(self, uri: URI) -> bytes:
        """The encoded handshake message (CONNECT) for ``uri``; the same bytes for every proxy with the
        same settings, so those without annotations or HMAC are encoded once per process."""
        cfg = self._pyroConfig
        ser = self._ser
        assert ser is not None
        handshake = self._pyroHandshake
        metadata = cfg.METADATA
        ctx = current_context
        if ctx.annotations or ctx.correlation_id_bytes is not None or type(self)._pyroAnnotations is not _BASE_ANNOTATIONS:
            ann = self._request_annotations(clear=False)
        else:
            ann = {}  # the common case, without a call
        key = None
        if not ann and self._hmac is None and type(handshake) in _SHAREABLE and type(uri.object) is str:
            # a pickle-family serializer's protocol version changes the bytes: part of the key
            key = (type(ser), getattr(ser, "protocol", None), handshake, uri.object if metadata else None,
                   self._pyroSeq, cfg.COMPRESSION, cfg.MAX_MESSAGE_SIZE)
            known = _hellos.get(key)
            if known is not None:
                return known
        data: dict[str, Any] = {"handshake": handshake}
        flags = 0
        if metadata:
            data["object"] = uri.object
            flags = FLAGS_META_ON_CONNECT
        head, payload = encode_parts(MSG_CONNECT, ser.dumps(data), ser.serializer_id, flags, self._pyroSeq, ann,
                                     self._hmac, cfg.COMPRESSION, cfg.MAX_MESSAGE_SIZE)
        hello = head + payload
        if key is not None:
            if len(_hellos) >= _CONNECT_ANSWERS_MAX:
                _hellos.clear()
            _hellos[key] = hello
        return hello

    def _dial(self, uri: URI) -> Connection:
        """Connect the transport to ``uri`` and give the connection its reader."""
        cfg = self._pyroConfig
        conn = _transport(uri.location_kind, cfg).connect(uri, self._timeout or None)
        try:
            conn.shutdown_on_close = False  # only the thread holding this proxy's lock uses the socket
            conn.reader = MessageReader(cfg.MAX_MESSAGE_SIZE, self._hmac)
            if cfg.LOGWIRE:
                wrap_connection(conn, "proxy")
        except BaseException:
            conn.close()
            raise
        return conn

    def _adopt(self, conn: Connection, uri: URI, replace_uri: bool) -> None:
        own = self.__dict__
        own["_object_id"] = uri.object
        own["_pyroConnection"] = conn
        if replace_uri:
            own["_pyroUri"] = uri
        own.pop("_lane", None)  # opened with the connection's second call (see _open_lane)

    def _first_call(self, conn: Connection, uri: URI, data: bytes, seq: int, sid: int) -> bytes | None:
        """Send ``data`` (the handshake, then call ``seq``) on the new ``conn`` and take the handshake's
        answer; returns the serialized result when the call's reply came with it as one plain RESULT,
        else None (the reply is then received as usual).

        The daemon's two replies usually arrive in one read. When they are a CONNECTOK this process
        decoded before (see :func:`_connect_answer`) and a RESULT without flags, both are taken here at
        once, with the checks :meth:`_handshake_reply` and the reader make; anything else (HMAC, wire
        logging, annotation hooks, a partial read, other replies) goes through :meth:`_handshake_reply`.
        """
        io = conn.plain_io() if self._plain_calls and self._hmac is None and not self._pyroRawWireResponse else None
        if io is None:
            _send_connecting(conn, uri, data)
            self._handshake_reply(conn, uri)
            return None
        sendall, recv_into = io
        try:
            sendall(data)
        except (OSError, ValueError) as exc:
            failed = map_oserror(exc, "sending")
            raise type(failed)(f"cannot connect to {uri.location}: {failed}") from exc
        reader = conn.reader
        view = reader._view
        try:
            n = recv_into(view)
        except (OSError, ValueError) as exc:
            error = receive_error(exc)
            if error is not None:
                raise type(error)(f"cannot connect to {uri.location}: {error}") from exc
            n = -1  # interrupted: received again by the general path
        if n >= 2 * HEADER_SIZE:
            max_size = reader.max_size
            tag_version, msgtype, flags, hseq, size, rsid, ann_size, _reserved, checksum = _unpack_header(view, 0)
            stop = HEADER_SIZE + ann_size + size
            if (msgtype == MSG_CONNECTOK and flags == FLAGS_META_ON_CONNECT and rsid == sid and tag_version == _TAG_VERSION
                    and hseq == (seq - 1) & 0xFFFF and size >= 0 and n >= stop + HEADER_SIZE
                    and checksum == (msgtype + flags + hseq + size + rsid + ann_size + _BASE) & 0xFFFF
                    and not 0 < max_size < size + ann_size
                    and (not ann_size or ann_size == 22 and _unpack_chunk(view, HEADER_SIZE) == _CORR_CHUNK)):
                answer = _connect_answers.get((sid, view[stop - size : stop].tobytes()))
                tag_version, msgtype, flags, rseq, size, rsid, ann_size, _reserved, checksum = _unpack_header(view, stop)
                body = stop + HEADER_SIZE
                if (answer is not None and n == body + ann_size + size and msgtype == MSG_RESULT and rseq == seq
                        and rsid == sid and not flags and tag_version == _TAG_VERSION and size >= 0
                        and checksum == (msgtype + rseq + size + rsid + ann_size + _BASE) & 0xFFFF
                        and not 0 < max_size < size + ann_size):
                    if ann_size == 22 and _unpack_chunk(view, body) == _CORR_CHUNK:
                        current_context.response_annotations = {"CORR": view[body + 6 : body + 22].tobytes()}
                        body += 22
                    if body + size == n:  # (no other annotations)
                        self._note_members(uri, answer[1])
                        return view[body:n].tobytes()
        self._handshake_reply(conn, uri, n)
        return None

    def _handshake_reply(self, conn: Connection, uri: URI, received: int = -1) -> Any:
        """Receive and process the daemon's answer to the handshake; returns its handshake response.

        ``received`` >= 0: that many bytes of the answer were read into the start of the (empty) reader's
        buffer already.
        """
        try:
            msg = conn.recv_message() if received < 0 else conn.reader.received(received) or conn.recv_message()
        except errors.CommunicationError as exc:
            raise type(exc)(f"cannot connect to {uri.location}: {exc}") from exc
        except errors.SecurityError as exc:  # the reply failed our HMAC check: Pyro4 raises CommunicationError
            raise errors.CommunicationError(f"cannot connect to {uri.location}: {exc}") from exc
        if msg.type not in (MSG_CONNECTOK, MSG_CONNECTFAIL):
            raise errors.ProtocolError(f"cannot connect to {uri.location}: invalid msg type {msg.type} received")
        ser = self._ser
        assert ser is not None
        if msg.serializer_id != ser.serializer_id:
            ser = get_registry().serializer_by_id(msg.serializer_id)(self._pyroConfig)
        if msg.type == MSG_CONNECTFAIL:
            reason = ser.loads(msg.data) if msg.data else "?"
            raise errors.CommunicationError(f"connection to {uri.location} rejected: {reason}")
        if msg.annotations and type(self)._pyroResponseAnnotations is not _BASE_RESPONSE_ANNOTATIONS:
            self._pyroResponseAnnotations(msg.annotations, msg.type)
        if not msg.flags & FLAGS_META_ON_CONNECT:
            return ser.loads(msg.data) if msg.data else "?"
        response, members = _connect_answer(ser, msg.serializer_id, msg.data)
        self._note_members(uri, members)
        return response

    def _note_members(self, uri: URI, members: _Members) -> None:
        """Take the members a handshake with (resolved) ``uri`` reported, and remember its plain methods."""
        self._apply_members(members)
        if _known_methods.get(_uri_key(uri)) is not members.plain or uri is not self._pyroUri:
            _remember((uri,) if uri is self._pyroUri else (uri, self._pyroUri), members.plain)

    # ------------------------------------------------------------------ calls
    def _pyroInvoke(  # noqa: N802
        self, methodname: str, vargs: Any, kwargs: Any, flags: int = 0, objectId: str | None = None  # noqa: N803
    ) -> Any:
        """Perform one remote call and return its result (or raise its exception)."""
        if _call_gates and not flags & FLAGS_ONEWAY and methodname not in self._pyroOneway:
            gate = _call_gates.get(_get_ident())
            if gate is not None:  # a multiplex daemon's call: re-entrant calls are served while it waits
                return gate.yield_during(self._pyroInvoke, methodname, vargs, kwargs, flags, objectId)
        if not flags and objectId is None:
            lane = self._lane
            if lane is None and self._pyroConnection is not None:  # connected, and no lane tried yet
                lane = self._open_lane()
            if lane:  # the common call takes the lane
                result = lane(methodname, vargs, kwargs)
                if result is not SLOW:
                    return result
        with self._lock:
            conn = self._pyroConnection
            hello = None
            if conn is None:
                if flags or methodname in self._pyroOneway or type(self)._pyroValidateHandshake is not _BASE_VALIDATE:
                    self._connect()
                    conn = self._pyroConnection
                    assert conn is not None
                else:  # the handshake goes out with this call, in one send: one round trip saved
                    uri = self._prepare()
                    hello = self._hello(uri)
            ser = self._ser
            assert ser is not None
            object_id = objectId or self._object_id
            ctx = current_context
            cls = type(self)
            if ctx.annotations or ctx.correlation_id_bytes is not None or cls._pyroAnnotations is not _BASE_ANNOTATIONS:
                ann: dict[str, bytes] | None = self._request_annotations()
            else:
                ann = None  # the common case: nothing to annotate
            if vargs and type(vargs[0]) is SerializedBlob:
                if ann is None:
                    ann = {}
                payload, flags = self._blob_payload(ser, object_id, methodname, vargs, kwargs, ann, flags)
                parts = None
            else:
                parts = None
                for value in vargs:
                    if type(value) is bytes and len(value) >= _GATHER_THRESHOLD:  # send it without a copy
                        parts = call_parts(ser, object_id, methodname, vargs, kwargs)
                        break
                payload = ser.dumps_call(object_id, methodname, vargs, kwargs) if parts is None else b""
            if methodname in self._pyroOneway:
                flags |= FLAGS_ONEWAY
            seq = self.__dict__["_pyroSeq"] = (self._pyroSeq + 1) & 0xFFFF
            cfg = self._pyroConfig
            sid = ser.serializer_id
            if parts is None:
                if ann is None and self._hmac is None:
                    head, payload = encode_plain(MSG_INVOKE, payload, sid, flags, seq, None, cfg.COMPRESSION,
                                                 cfg.MAX_MESSAGE_SIZE)
                else:
                    head, payload = encode_parts(MSG_INVOKE, payload, sid, flags, seq, ann, self._hmac,
                                                 cfg.COMPRESSION, cfg.MAX_MESSAGE_SIZE)
            else:
                head, parts = encode_gather(MSG_INVOKE, parts, sid, flags, seq, ann, self._hmac,
                                            cfg.COMPRESSION, cfg.MAX_MESSAGE_SIZE)
            try:
                if hello is not None:  # connect now, with the call encoded: nothing sent yet can fail
                    conn = self._dial(uri)
                    self._adopt(conn, uri, False)
                    try:
                        if parts is None:
                            data = self._first_call(conn, uri, hello + head + payload, seq, sid)
                            if data is not None:  # both replies taken at once: a plain result
                                return ser.loads(data)
                        else:
                            _send_connecting(conn, uri, hello)
                            conn.send_gather(head, parts)
                            self._handshake_reply(conn, uri)  # CONNECTFAIL raises: the daemon closes without the call
                    except BaseException:
                        self._pyroRelease()
                        raise
                elif parts is None:
                    conn.send_parts(head, payload)
                else:
                    conn.send_gather(head, parts)
                if flags & FLAGS_ONEWAY:
                    return None
                msg = conn.recv_message()
                _check_reply(msg, seq, sid)
            except (errors.CommunicationError, errors.SecurityError, KeyboardInterrupt):  # unusable: release
                self._pyroRelease()
                raise
            return self._result(conn, msg, ser)

    def _open_lane(self) -> Any:
        """Open the lane of the current connection (False when it can have none)."""
        with self._lock:
            conn = self._pyroConnection
            if conn is None:
                return None
            lane = self.__dict__["_lane"] = open_lane(self, conn) or False
            return lane

    def _finish_call(self, conn: Connection, received: int, seq: int, ser: Serializer) -> Any:
        """The result of call ``seq`` that the lane sent, whose reply was not one whole plain RESULT:
        ``received`` bytes of it are at the start of the (empty) reader's buffer."""
        try:
            msg = conn.reader.received(received)
            if msg is None:
                msg = conn.recv_message()
            _check_reply(msg, seq, ser.serializer_id)
        except (errors.CommunicationError, errors.SecurityError, KeyboardInterrupt):  # unusable: release
            self._pyroRelease()
            raise
        return self._result(conn, msg, ser)

    def _result(self, conn: Connection, msg: Any, ser: Serializer) -> Any:
        """What a call returns for its RESULT message ``msg`` (or raises)."""
        annotations = msg.annotations
        if annotations:
            current_context.response_annotations = annotations  # the reader made this dict for this message
            if type(self)._pyroResponseAnnotations is not _BASE_RESPONSE_ANNOTATIONS:
                self._pyroResponseAnnotations(annotations, msg.type)
        if self._pyroRawWireResponse:
            return msg
        data = ser.loads(msg.data)
        if msg.flags or type(msg.data) is not bytes:
            return self._reply_value(conn, msg, data)
        return data

    def _reply_value(self, conn: Connection, msg: Any, data: Any) -> Any:
        """The value a call returns for a reply with flags (an exception, a stream) or a large body."""
        if type(msg.data) is memoryview:  # a large body: its buffer may serve the next one
            conn.reader.recycle(msg)
        rflags = msg.flags
        if not rflags:
            return data
        if rflags & FLAGS_ITEMSTREAMRESULT:
            stream_id = bytes(msg.annotations.get("STRM", b"")).decode()
            if not stream_id:
                raise errors.ProtocolError("result of call is an iterator, but the server is not configured to allow streaming")
            from pyroplug.core.streams import StreamResultIterator

            return StreamResultIterator(stream_id, self)
        if rflags & FLAGS_EXCEPTION:
            if isinstance(data, _DROPPED_AFTER):
                self._pyroRelease()
            raise data
        return data

    def _blob_payload(
        self, ser: Serializer, object_id: Any, method: str, vargs: Any, kwargs: Any, ann: dict[str, bytes], flags: int
    ) -> tuple[Any, int]:
        if len(vargs) > 1 or kwargs:
            raise errors.SerializeError("if SerializedBlob is used, it must be the only argument")
        blob: SerializedBlob = vargs[0]
        ann["BLBI"] = blob_annotation(blob, object_id, method)
        if blob._contains_blob:
            if blob._data.serializer_id == ser.serializer_id:
                return blob._data.data, flags | FLAGS_KEEPSERIALIZED  # pass the received bytes through
            data = blob.deserialized()  # another serializer than this proxy's: re-encode (Pyro4 mislabelled it)
        else:
            data = blob._data
        # the plain 4-tuple call form, whatever the data: every receiver's deserialized() can decode it
        return ser.dumps((object_id, method, data, kwargs)), flags | FLAGS_KEEPSERIALIZED

    def _request_annotations(self, clear: bool = True) -> dict[str, bytes]:
        ctx = current_context
        ann = ctx.annotations
        corr = ctx.correlation_id_bytes
        if not ann and corr is None and type(self)._pyroAnnotations is Proxy._pyroAnnotations:
            return {}
        ann = dict(ann)
        ann.pop("HMAC", None)  # a server's request annotations (its own HMAC included) are not this call's
        if corr is not None:
            ann["CORR"] = bytes(corr)
        else:
            ann.pop("CORR", None)
        ann.update(self._pyroAnnotations())
        if clear:
            ctx.annotations = {}
        return ann

    def _pyroInvokeBatch(self, calls: Any, oneway: bool = False) -> Any:  # noqa: N802
        """Send a list of (method, vargs, kwargs) calls as one batch message."""
        flags = FLAGS_BATCH | (FLAGS_ONEWAY if oneway else 0)
        return self._pyroInvoke("<batch>", calls, None, flags)

    # ------------------------------------------------------------------ metadata
    def _pyroGetMetadata(self, objectId: str | None = None, known_metadata: dict | None = None) -> None:  # noqa: N802, N803
        """Fill in the exposed methods, oneway methods and attributes (from the daemon unless given)."""
        if known_metadata:
            self._process_metadata(known_metadata)
            return
        object_id = objectId or self._pyroUri.object
        if self._pyroConnection is None:
            self._connect()
            if self._pyroMethods or self._pyroAttrs:
                return
        self._process_metadata(self._pyroInvoke("get_metadata", [object_id], {}, objectId=DAEMON_NAME))

    def _process_metadata(self, metadata: dict[str, Any]) -> None:
        if metadata:
            self._apply_members(_Members(metadata))

    def _apply_members(self, members: _Members) -> None:
        own = self.__dict__
        own["_pyroOneway"] = set(members.oneway)  # the proxy's own sets: users may change them
        methods = own["_pyroMethods"] = set(members.methods)
        attrs = own["_pyroAttrs"] = set(members.attrs)
        # cached remote methods the object no longer has (the proxy's own attributes all start with "_")
        stale = own.keys() - methods - _LOCAL
        if stale:
            for cached in [k for k in stale if k[0] != "_" and isinstance(own[k], _RemoteMethod)]:
                del own[cached]
        if not methods and not attrs:
            raise errors.PyroError(
                "remote object doesn't expose any methods or attributes. Did you forget setting @expose on them?"
            )

    # ------------------------------------------------------------------ override hooks
    def _pyroAnnotations(self) -> dict[str, bytes]:  # noqa: N802
        """Override to add annotations (4-letter keys) to every request."""
        return {}

    def _pyroResponseAnnotations(self, annotations: Any, msgtype: int) -> None:  # noqa: N802
        """Override to see the annotations of every response."""

    def _pyroValidateHandshake(self, response: Any) -> None:  # noqa: N802
        """Override to check the daemon's handshake response; raise to refuse the connection."""

    # ------------------------------------------------------------------ modes
    def _pyroBatch(self) -> Any:  # noqa: N802
        """A batch adapter: queue calls, then send them in one message."""
        from pyroplug.core.batch import BatchProxy

        return BatchProxy(self)

    def _pyroAsync(self, asynchronous: bool = True) -> None:  # noqa: N802
        """Switch this proxy to asynchronous calls that return FutureResults (or back)."""
        object.__setattr__(self, "_async", asynchronous)
        for cached in [k for k, v in self.__dict__.items() if isinstance(v, _RemoteMethod)]:
            del self.__dict__[cached]

    # ------------------------------------------------------------------ python protocol
    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pyroRelease()

    def __del__(self) -> None:
        try:
            own = self.__dict__
            own.pop("_lane", None)  # (it refers to this dict)
            conn = own.get("_pyroConnection")
            if conn is not None:
                conn.close()
        except Exception:  # interpreter shutdown: modules may be gone
            pass

    def __copy__(self) -> Proxy:
        p = type(self)(URI(self._pyroUri), config=self._pyroConfig)
        for name in ("_pyroSerializer", "_pyroHandshake", "_pyroRawWireResponse", "_pyroMaxRetries", "_hmac", "_timeout", "_async"):
            object.__setattr__(p, name, getattr(self, name))
        object.__setattr__(p, "_pyroOneway", set(self._pyroOneway))
        object.__setattr__(p, "_pyroMethods", set(self._pyroMethods))
        object.__setattr__(p, "_pyroAttrs", set(self._pyroAttrs))
        return p

    def __eq__(self, other: object) -> bool:
        return other is self or (isinstance(other, Proxy) and other._pyroUri == self._pyroUri)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self._pyroUri)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(type(self))) | set(self.__dict__) | self._pyroMethods | self._pyroAttrs)

    def __repr__(self) -> str:
        conn = self.__dict__.get("_pyroConnection")
        state = f"connected {conn.family}" if conn is not None else "not connected"
        return f"<pyroplug.Proxy at {id(self):#x}; {state}; for {self.__dict__.get('_pyroUri')}>"

    def __str__(self) -> str:
        return repr(self)

    # ------------------------------------------------------------------ wire and pickle forms
    def _wire_state(self) -> tuple:
        hmac_text = "b64:" + base64.b64encode(self._hmac).decode("ascii") if self._hmac else None
        return (str(self._pyroUri), tuple(self._pyroOneway), tuple(self._pyroMethods), tuple(self._pyroAttrs),
                float(self._timeout or 0.0), hmac_text, self._pyroHandshake, self._pyroMaxRetries, self._pyroSerializer)

    @classmethod
    def _from_wire_state(cls, state: Any) -> Proxy:
        if not isinstance(state, (list, tuple)) or len(state) < 8:
            raise errors.SerializeError("invalid Proxy state")
        hmac_key = state[5]
        if hmac_key:
            if not isinstance(hmac_key, str) or not hmac_key.startswith("b64:"):
                raise errors.ProtocolError("hmac encoding error")
            hmac_key = base64.b64decode(hmac_key[4:].encode("ascii"))
        proxy = cls(URI(state[0]))
        proxy.__setstate__((proxy._pyroUri, set(state[1]), set(state[2]), set(state[3]), state[4], hmac_key,
                            state[6], state[7], state[8] if len(state) > 8 else None))
        return proxy

    def __getstate__(self) -> tuple:
        return (self._pyroUri, self._pyroOneway, self._pyroMethods, self._pyroAttrs, self._timeout, self._hmac,
                self._pyroHandshake, self._pyroMaxRetries, self._pyroSerializer)

    def __setstate__(self, state: tuple) -> None:
        if "_pyroConfig" not in self.__dict__:
            Proxy.__init__(self, state[0])
        setattr_ = object.__setattr__
        setattr_(self, "_pyroUri", state[0])
        setattr_(self, "_pyroOneway", set(state[1]))
        setattr_(self, "_pyroMethods", set(state[2]))
        setattr_(self, "_pyroAttrs", set(state[3]))
        setattr_(self, "_hmac", state[5])
        setattr_(self, "_pyroHandshake", state[6])
        setattr_(self, "_pyroSerializer", state[8] if len(state) > 8 else None)


#: the hooks a subclass may override; when it does not, the call path skips them
_BASE_ANNOTATIONS = Proxy._pyroAnnotations
_BASE_RESPONSE_ANNOTATIONS = Proxy._pyroResponseAnnotations
_BASE_VALIDATE = Proxy._pyroValidateHandshake
