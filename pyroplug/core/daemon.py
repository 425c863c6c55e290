"""Daemon: hosts Pyro objects, performs the handshake and dispatches calls (the server side).

Plugins are resolved once, in the constructor: the accepted serializers (by wire id), the transport
for the bind address and the server type. The per-call path (:meth:`Daemon._invoke`) is dictionary
lookups, one deserialize, the call, one serialize and one send.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pyroplug.core import errors
from pyroplug.core.config import Config, accepted_set
from pyroplug.core.config import config as global_config
from pyroplug.core.constants import DAEMON_NAME
from pyroplug.core.context import current_context
from pyroplug.core.daemonobject import DaemonObject, StreamTable
from pyroplug.core.expose import MEMBERS_BY_CLASS as _members_by_class
from pyroplug.core.expose import is_private_attribute, members_of
from pyroplug.core.futures import _ExceptionWrapper
from pyroplug.core.gather import THRESHOLD as _GATHER_THRESHOLD
from pyroplug.core.gather import value_parts
from pyroplug.core.lane import serving_lane
from pyroplug.core.protocol import (
    FLAGS_BATCH,
    FLAGS_COMPRESSED,
    FLAGS_EXCEPTION,
    FLAGS_ITEMSTREAMRESULT,
    FLAGS_KEEPSERIALIZED,
    FLAGS_META_ON_CONNECT,
    FLAGS_ONEWAY,
    MSG_CONNECT,
    MSG_CONNECTFAIL,
    MSG_CONNECTOK,
    MSG_INVOKE,
    MSG_PING,
    MSG_RESULT,
    Message,
    MessageReader,
    encode_gather,
    encode_parts,
    encode_plain,
    frame_plain,
)
from pyroplug.core.registry import get_registry
from pyroplug.core.serializer import wire_class
from pyroplug.core.tracebacks import formatTraceback
from pyroplug.core.transport import map_oserror
from pyroplug.core.uri import URI
from pyroplug.core.wirelog import log_received, wrap_connection
from pyroplug.core.workers import ElasticPool

if TYPE_CHECKING:
    from pyroplug.core.proxy import Proxy
    from pyroplug.core.serializer import Serializer
    from pyroplug.core.transport import Connection

__all__ = ["Daemon", "DaemonObject"]

log = logging.getLogger(__name__)

_MARSHAL_ID = 3
_LAZY_VIEWS: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))
_NOT_STREAMS = frozenset([type(None), bool, int, float, str, bytes, list, tuple, dict, set])
#: errors raised in _invoke before any reply byte was sent: reported to the caller, the connection stays usable
#: values a cache may hand to several connections
_IMMUTABLE = frozenset([type(None), bool, int, float, str, bytes])
_STREAM_INTACT = (errors.SerializeError, errors.MessageTooLargeError)


def _corr_base() -> int:
    """64 random bits for the first half of this process's correlation ids (version 4, RFC 4122 variant)."""
    return ((int.from_bytes(os.urandom(8), "big") & ~0xF000) | 0x4000) << 64 | 1 << 63


_corr_prefix = _corr_base()
_corr_counter = itertools.count(int.from_bytes(os.urandom(4), "big"))


def _reseed_corr() -> None:
    global _corr_prefix, _corr_counter
    _corr_prefix = _corr_base()
    _corr_counter = itertools.count(int.from_bytes(os.urandom(4), "big"))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_corr)  # a forked child must not repeat its parent's ids


def _new_corr() -> bytes:
    """A fresh correlation id, formatted as the 16 bytes of a version 4 UUID like stock Pyro4's.

    Unique, not secret: a random per-process half and a counter (the per-call path avoids a
    getrandom system call per reply); the counter wraps within its 62 bits.
    """
    return (_corr_prefix | (next(_corr_counter) & 0x3FFFFFFFFFFFFFFF)).to_bytes(16, "big")


@wire_class("Pyro4.core.Daemon")
class Daemon:
    """A Pyro daemon: binds a listener, hosts registered objects and serves their calls.

    ``Daemon(host, port, unixsocket, nathost, natport, interface)`` as in Pyro4; binds to localhost by
    default. Keyword-only extras: ``transport`` (a plugin transport's location kind) with ``address``,
    and ``config`` (a Config to copy instead of the global one).
    """

    def __init__(
        self,
        host: str | None = None,
        port: int = 0,
        unixsocket: str | None = None,
        nathost: str | None = None,
        natport: int | None = None,
        interface: type[DaemonObject] = DaemonObject,
        connected_socket: Any = None,
        *,
        transport: str | None = None,
        address: str | None = None,
        config: Config | None = None,
    ) -> None:
        cfg = (config or global_config).copy()
        self.config = cfg
        if connected_socket is not None:
            raise errors.DaemonError("connected_socket daemons are not supported yet; use a listening daemon")
        if host is None:
            host = cfg.HOST
        if nathost is None:
            nathost = cfg.NATHOST
        if natport is None and nathost is not None:
            natport = cfg.NATPORT
        if nathost and unixsocket:
            raise ValueError("cannot use nathost together with unixsocket")
        if (nathost is None) ^ (natport is None):
            raise ValueError("must provide natport with nathost")
        registry = get_registry()
        self._serializers: dict[int, Serializer] = {}
        for name in sorted(accepted_set(cfg.SERIALIZERS_ACCEPTED)):
            ser = registry.serializer(name)(cfg)
            ser.replace = _autoproxy
            self._serializers[ser.serializer_id] = ser
        self._fail_serializer = registry.serializer_by_id(_MARSHAL_ID)(cfg)
        kind = transport or ("u" if unixsocket else "tcp")
        self.transport = registry.transport_for(kind)(cfg)
        self.listener = self.transport.listen(host, port, unixsocket or address)
        self.locationStr: str = self.listener.location
        if natport == 0:
            natport = self.listener.port
        self.natLocationStr: str | None = None
        if nathost:
            self.natLocationStr = f"[{nathost}]:{natport}" if ":" in nathost else f"{nathost}:{natport}"
        self.objectsById: dict[str, Any] = {}
        daemon_object = interface(self)
        daemon_object._pyroId = DAEMON_NAME  # type: ignore[attr-defined]
        self.objectsById[DAEMON_NAME] = daemon_object
        self._pyroInstances: dict[type, Any] = {}
        self._instance_lock = threading.Lock()
        self.streams = StreamTable(cfg.ITER_STREAM_LIFETIME, cfg.ITER_STREAM_LINGER)
        self.__hmac_key: bytes | None = None
        self._plain_replies = True
        self._custom_annotations = type(self).annotations is not Daemon.annotations
        #: (serializer id, object id, handshake response) -> (the object's Members, serialized CONNECTOK data)
        self._connect_answers: dict[tuple, tuple[Any, bytes]] = {}
        self._hellos: dict[tuple[int, bytes], tuple[Any, Any]] = {}  # see _hello_data
        # a burst of oneway calls is run by a few workers; a call waits at most ~2 x spawn_delay behind long ones
        self._oneway_pool = ElasticPool("oneway-call", spawn_delay=0.02) if cfg.ONEWAY_THREADED else None
        self._shutdown_requested = threading.Event()
        self._closed = False
        self.transportServer = registry.server_type(cfg.SERVERTYPE)(cfg)
        if cfg.LOGWIRE:
            self.handle_message = self._logged_handle_message  # type: ignore[method-assign]
        self.transportServer.init(self, self.listener)
        log.debug("daemon created on %s (%s server)", self.locationStr, cfg.SERVERTYPE)

    # ------------------------------------------------------------------ properties
    @property
    def _pyroHmacKey(self) -> bytes | None:  # noqa: N802 - Pyro4 API
        return self.__hmac_key

    @_pyroHmacKey.setter
    def _pyroHmacKey(self, value: bytes | str | None) -> None:  # noqa: N802
        self.__hmac_key = value.encode("utf-8") if isinstance(value, str) else value
        #: replies need no HMAC: _invoke encodes them the short way (see protocol.plain_head)
        self._plain_replies = not self.__hmac_key

    @property
    def sock(self) -> Any:
        """The listening socket."""
        return self.listener.sock

    @property
    def sockets(self) -> list[Any]:
        """The sockets a foreign event loop should wait on."""
        return self.transportServer.sockets

    @property
    def selector(self) -> Any:
        """The multiplex server's selector (multiplex only)."""
        return getattr(self.transportServer, "selector", None)

    @property
    def streaming_responses(self) -> dict[str, list[Any]]:
        """Open item streams (Pyro4's name)."""
        return self.streams.entries

    # ------------------------------------------------------------------ registration
    def register(self, obj_or_class: Any, objectId: str | None = None, force: bool = False) -> URI:  # noqa: N803
        """Register an object or a class (instances made per its instance mode); returns its URI."""
        if objectId:
            if not isinstance(objectId, str):
                raise TypeError("objectId must be a string or None")
        else:
            objectId = "obj_" + os.urandom(16).hex()
        if not force:
            if _own_pyro_id(obj_or_class):
                raise errors.DaemonError("object or class already has a Pyro id")
            if objectId in self.objectsById:
                raise errors.DaemonError("an object or class is already registered with that id")
        try:
            if inspect.isclass(obj_or_class) and not hasattr(obj_or_class, "_pyroInstancing"):
                setattr(obj_or_class, "_pyroInstancing", ("session", None))
            obj_or_class._pyroId = objectId
            obj_or_class._pyroDaemon = self
        except (AttributeError, TypeError):
            raise errors.DaemonError(
                f"cannot register {type(obj_or_class).__name__} objects: they don't accept the _pyroId and "
                "_pyroDaemon attributes (builtin types and __slots__ classes without them)"
            ) from None
        self.objectsById[objectId] = obj_or_class
        return self.uriFor(objectId)

    def unregister(self, objectOrId: Any) -> None:  # noqa: N803
        """Remove an object (or the object with this id) from the daemon."""
        if objectOrId is None:
            raise ValueError("object or objectid argument expected")
        object_id: str | None
        if isinstance(objectOrId, str):
            object_id, obj = objectOrId, None
        else:
            object_id, obj = getattr(objectOrId, "_pyroId", None), objectOrId
            if object_id is None:
                raise errors.DaemonError("object isn't registered")
        if object_id == DAEMON_NAME:
            return
        registered = self.objectsById.pop(object_id, None)
        target = obj if obj is not None else registered
        if target is not None:
            for attr in ("_pyroId", "_pyroDaemon"):
                try:
                    delattr(target, attr)
                except AttributeError:
                    pass

    def uriFor(self, objectOrId: Any, nat: bool = True) -> URI:  # noqa: N802, N803
        """The URI of a registered object (or of any id string) at this daemon's (NAT) location."""
        if not isinstance(objectOrId, str):
            objectOrId = getattr(objectOrId, "_pyroId", None)
            if objectOrId is None or objectOrId not in self.objectsById:
                raise errors.DaemonError("object isn't registered in this daemon")
        loc = (self.natLocationStr or self.locationStr) if nat else self.locationStr
        return URI(f"PYRO:{objectOrId}@{loc}")

    def proxyFor(self, objectOrId: Any, nat: bool = True) -> Proxy:  # noqa: N802, N803
        """A Proxy for a registered object, with its metadata already filled in."""
        from pyroplug.core.proxy import Proxy

        uri = self.uriFor(objectOrId, nat)
        try:
            registered = self.objectsById[uri.object]
        except KeyError:
            raise errors.DaemonError("object isn't registered in this daemon") from None
        proxy = Proxy(uri)
        proxy._pyroGetMetadata(known_metadata=members_of(registered, self.config.REQUIRE_EXPOSE).as_dict())
        return proxy

    def resetMetadataCache(self, objectOrId: Any, nat: bool = True) -> None:  # noqa: N802, N803
        """Forget the cached exposed members of a registered object's class."""
        from pyroplug.core.expose import reset_exposed_members

        uri = self.uriFor(objectOrId, nat)
        registered = self.objectsById.get(uri.object)
        if registered is not None:
            reset_exposed_members(registered)

    # ------------------------------------------------------------------ loop control
    def requestLoop(self, loopCondition: Callable[[], bool] = lambda: True) -> None:  # noqa: N802, N803
        """Serve requests until :meth:`shutdown` or until ``loopCondition()`` returns False."""
        if self._closed:
            raise errors.PyroError("daemon is closed")
        self._shutdown_requested.clear()
        # shutdown() stops the server type's loop itself: no extra check per iteration here
        self.transportServer.loop(loopCondition)
        if self._shutdown_requested.is_set():
            self.close()

    def events(self, eventsockets: Any) -> None:
        """Process the given ready sockets once (for foreign event loops)."""
        self.transportServer.events(eventsockets)

    def shutdown(self) -> None:
        """Stop the request loop (from any thread); the loop then closes the daemon."""
        self._shutdown_requested.set()
        self.transportServer.shutdown()

    def close(self) -> None:
        """Close the listener and every connection, and release resources."""
        if self._closed:
            return
        self._closed = True
        self._shutdown_requested.set()
        self.streams.clear()
        self.transportServer.close()  # connections first: no call may find its object gone
        if self._oneway_pool is not None:
            self._oneway_pool.close()
        self.listener.close()
        for object_id in [k for k in self.objectsById if k != DAEMON_NAME]:
            if getattr(self.objectsById[object_id], "_pyroDaemon", None) is self:
                self.unregister(object_id)  # the objects may be registered again elsewhere

    def __enter__(self) -> Daemon:
        if self._closed:
            raise errors.PyroError("cannot reuse this object")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def combine(self, daemon: Daemon) -> None:
        """Serve another daemon's connections from this daemon's loop (multiplex only)."""
        combine = getattr(self.transportServer, "combine_loop", None)
        if combine is None:
            raise errors.PyroError("combining daemons needs the multiplex server type")
        combine(daemon.transportServer)

    # ------------------------------------------------------------------ override hooks
    def validateHandshake(self, conn: Connection, data: Any) -> Any:  # noqa: N802
        """Override to check a connecting client; return the handshake reply or raise to refuse."""
        return "hello"

    def clientDisconnect(self, conn: Connection) -> None:  # noqa: N802
        """Override to act when a client connection closes."""

    def housekeeping(self) -> None:
        """Override for periodic work; runs about every POLLTIMEOUT seconds."""

    def annotations(self) -> dict[str, bytes]:
        """Override to add annotations (4-letter keys) to every response."""
        return {}

    # ------------------------------------------------------------------ RequestHandler
    def connection_opened(self, conn: Connection) -> None:
        """Give a new connection its reader (message size limit, hmac key)."""
        reader = conn.reader = MessageReader(self.config.MAX_MESSAGE_SIZE, self.__hmac_key)
        reader.defer_hmac = True  # the CONNECT is authenticated by _handshake, which can answer CONNECTFAIL
        conn.handshaked = False
        if getattr(conn, "peer_address", None) is None:  # a socket listener stores accept()'s address
            conn.peer_address = conn.peer  # type: ignore[attr-defined]
        if self.config.LOGWIRE:
            wrap_connection(conn, "daemon")

    def connection_closed(self, conn: Connection) -> None:
        """Drop the connection's session instances, close its tracked resources, start stream lingering."""
        conn.pyroInstances.clear()
        if conn.has_tracked_resources():
            for resource in list(conn.tracked_resources):
                try:
                    resource.close()
                except Exception:  # one failing resource must not keep the others open
                    log.exception("error closing tracked resource %r", resource)
            conn.tracked_resources.clear()
        self.streams.client_gone(conn)
        self.clientDisconnect(conn)

    def handle_message(self, conn: Connection, msg: Message) -> None:
        """Process one message from a connection and send its reply, if any."""
        if conn.handshaked:
            if msg.type == MSG_INVOKE:
                self._invoke(conn, msg)
            elif msg.type == MSG_PING:
                ann = self._reply_annotations(msg.annotations.get("CORR") or _new_corr())
                conn.send_parts(*encode_parts(MSG_PING, b"pong", msg.serializer_id, 0, msg.seq, ann, self.__hmac_key))
            else:
                raise errors.ProtocolError(f"invalid msg type {msg.type} received")
        elif msg.type == MSG_CONNECT:
            self._handshake(conn, msg)
        else:
            raise errors.ProtocolError(f"invalid msg type {msg.type} received before the handshake")

    def receiver(self, conn: Connection) -> Callable[[], Any] | None:
        """RequestHandler: the serving lane of the handshaked ``conn`` (see :func:`pyroplug.core.lane.serving_lane`),
        which hands plain calls to the dispatch directly; None with wire logging or an overridden
        ``handle_message`` (every message must go through it then)."""
        if type(self).handle_message is not Daemon.handle_message or "handle_message" in self.__dict__:
            return None
        return serving_lane(self, conn)

    def _logged_handle_message(self, conn: Connection, msg: Message) -> None:
        log_received("daemon", msg)
        Daemon.handle_message(self, conn, msg)

    def run_housekeeping(self) -> None:
        """RequestHandler: expire item streams, then run the user's :meth:`housekeeping` hook."""
        self.streams.expire()
        self.housekeeping()

    # ------------------------------------------------------------------ internals
    def _reply_annotations(self, corr: bytes | None) -> dict[str, bytes]:
        pending = current_context.response_annotations
        if pending:
            ann = dict(pending)
            current_context.response_annotations = {}
        else:
            ann = {}
        if corr:
            ann["CORR"] = corr
        if self._custom_annotations:
            ann.update(self.annotations())
        return ann

    def _handshake(self, conn: Connection, msg: Message) -> None:
        reader = conn.reader
        if reader.defer_hmac:
            if reader.hmac_key or msg.flags & FLAGS_COMPRESSED or "HMAC" in msg.annotations:  # else nothing to do
                try:
                    msg = reader.authenticate(msg)
                except errors.SecurityError as exc:
                    self._refuse_unauthenticated(conn, exc)
                    raise
            reader.defer_hmac = False  # later messages are checked by the reader itself
        ser = self._serializers.get(msg.serializer_id)
        corr = msg.annotations.get("CORR") or _new_corr()
        ctx = current_context
        ctx.client, ctx.client_sock_addr = conn, getattr(conn, "peer_address", None)
        ctx.correlation_id_bytes = corr
        try:
            if ser is None:
                raise errors.SerializeError(f"message used serializer that is not accepted: {msg.serializer_id}")
            data = msg.data
            known = self._hellos.get((msg.serializer_id, data)) if type(data) is bytes else None
            handshake, object_id = known if known is not None else self._hello_data(ser, msg)
            response = self.validateHandshake(conn, handshake)
            flags = 0
            if msg.flags & FLAGS_META_ON_CONNECT:
                flags = FLAGS_META_ON_CONNECT
                payload = self._connect_answer(ser, object_id, response)
            else:
                payload = ser.dumps(response)
            ann = self._reply_annotations(corr) if current_context.response_annotations or self._custom_annotations else None
            reply_type, sid = MSG_CONNECTOK, msg.serializer_id
        except Exception as exc:
            log.debug("handshake refused: %s", exc)
            fail = ser if ser is not None else self._fail_serializer
            payload, flags, reply_type, sid = fail.dumps(str(exc)), 0, MSG_CONNECTFAIL, fail.serializer_id
            # an unaccepted serializer is refused before any user code runs: no annotations() hook then
            ann = self._reply_annotations(corr) if ser is not None else {}
        if ann is None and self._plain_replies:  # the usual answer: its correlation id only
            head, body = encode_plain(reply_type, payload, sid, flags, msg.seq, corr, self.config.COMPRESSION)
        else:
            head, body = encode_parts(reply_type, payload, sid, flags, msg.seq, ann if ann is not None else {"CORR": corr},
                                      self.__hmac_key, self.config.COMPRESSION)
        if reply_type == MSG_CONNECTFAIL:
            conn.send_parts(head, body)
            raise errors.ConnectionClosedError("handshake refused")
        conn.handshaked = True
        if reader.pending and "send_parts" not in conn.__dict__ and not self.transportServer.defers_calls():
            # the client sent its first call with the handshake (pyroplug proxies do); not with LOGWIRE,
            # which logs each message it sends
            call = reader.next_message()
            if call is not None:
                self._answer_with_call(conn, head + body, call)
                return
        conn.send_parts(head, body)

    def _answer_with_call(self, conn: Connection, answer: bytes, call: Message) -> None:
        """Handle ``call``, which came with the handshake, and send the handshake's ``answer`` in front of
        its reply, in one send (the client waits for both). With no reply (a oneway call, an error) the
        answer goes out alone, before anything else is sent on the connection.
        """
        own: dict[str, Any] = conn.__dict__
        send_parts, send_gather = conn.send_parts, conn.send_gather
        plain_send = own.get("plain_send")  # a plain reply goes out through first_plain_send then

        def restore() -> None:
            own.pop("send_parts", None)
            own.pop("send_gather", None)
            if plain_send is not None:
                own["plain_send"] = plain_send

        def first_plain_send(frame: bytes) -> None:
            restore()
            plain_send(answer + frame)  # type: ignore[misc]

        def first_send_parts(head: bytes, payload: Any) -> None:
            restore()
            send_parts(answer + head, payload)

        def first_send_gather(head: bytes, parts: list[Any]) -> None:
            restore()
            send_gather(answer + head, parts)

        conn.send_parts = first_send_parts  # type: ignore[method-assign]
        conn.send_gather = first_send_gather  # type: ignore[method-assign]
        if plain_send is not None:
            own["plain_send"] = first_plain_send
        try:
            self.handle_message(conn, call)
        finally:
            if own.get("send_parts") is first_send_parts:  # nothing was sent
                restore()
                send_parts(answer, b"")

    def _hello_data(self, ser: Serializer, msg: Message) -> tuple[Any, Any]:
        """The handshake value and object id a CONNECT carries; decoded once per distinct CONNECT data
        when both are immutable (proxies of one program send the same bytes every time)."""
        data = msg.data
        key = (msg.serializer_id, data) if type(data) is bytes else None
        if key is not None:
            known = self._hellos.get(key)
            if known is not None:
                return known
        decoded = ser.loads(data)
        if not isinstance(decoded, dict) or "handshake" not in decoded:
            raise errors.ProtocolError("invalid handshake data")
        hello = (decoded["handshake"], decoded.get("object"))
        if key is not None and type(hello[0]) in _IMMUTABLE and type(hello[1]) in _IMMUTABLE:
            if len(self._hellos) >= 1024:
                self._hellos.clear()
            self._hellos[key] = hello
        return hello

    def _connect_answer(self, ser: Serializer, object_id: Any, response: Any) -> bytes:
        """The serialized ``{"handshake": response, "meta": metadata}``, cached per serializer and object
        while the object's exposed members stay the same (a text response, like the usual "hello")."""
        obj = self.objectsById.get(object_id) if type(object_id) is str else None
        if obj is None or type(response) is not str:
            meta = self.objectsById[DAEMON_NAME].get_metadata(object_id, as_lists=True)
            return ser.dumps({"handshake": response, "meta": meta})
        require = self.config.REQUIRE_EXPOSE
        members = _members_by_class.get((type(obj), require)) or members_of(obj, require)
        key = (ser.serializer_id, object_id, response)
        cached = self._connect_answers.get(key)
        if cached is not None and cached[0] is members:  # the metadata comes from the members alone
            return cached[1]
        meta = self.objectsById[DAEMON_NAME].get_metadata(object_id, as_lists=True)
        payload = ser.dumps({"handshake": response, "meta": meta})
        if len(self._connect_answers) >= 1024:
            self._connect_answers.clear()
        self._connect_answers[key] = (members, payload)
        return payload

    def _refuse_unauthenticated(self, conn: Connection, exc: errors.SecurityError) -> None:
        """Answer a CONNECT that failed its HMAC check: CONNECTFAIL with the reason, marshal, seq 0.

        Nothing of the unauthenticated message is used (like Pyro4, which has not read the seq then),
        and no user code runs for it (not even the annotations() hook); the reply is signed with this
        daemon's key, so a client with the right key can verify it.
        """
        log.info("handshake refused for %r: %s", conn, exc)
        payload = self._fail_serializer.dumps(str(exc))
        conn.send_parts(*encode_parts(MSG_CONNECTFAIL, payload, _MARSHAL_ID, 0, 0, None, self.__hmac_key))

    def _get_instance(self, clazz: type, conn: Connection) -> Any:
        mode, creator = getattr(clazz, "_pyroInstancing", ("session", None))
        if mode == "session":
            instance = conn.pyroInstances.get(clazz)
            if instance is None:
                instance = conn.pyroInstances[clazz] = _create_instance(clazz, creator)
            return instance
        if mode == "single":
            instance = self._pyroInstances.get(clazz)
            if instance is None:
                with self._instance_lock:
                    instance = self._pyroInstances.get(clazz)
                    if instance is None:
                        instance = self._pyroInstances[clazz] = _create_instance(clazz, creator)
            return instance
        if mode == "percall":
            return _create_instance(clazz, creator)
        raise errors.DaemonError("invalid instancemode in registered class")

    def _invoke(self, conn: Connection, msg: Message) -> None:
        flags = msg.flags
        seq = msg.seq
        sid = msg.serializer_id
        ser = self._serializers.get(sid)
        if ser is None:
            raise errors.ProtocolError(f"message used serializer that is not accepted: {sid}")
        annotations = msg.annotations
        corr = annotations.get("CORR")
        if not corr:  # _new_corr(), inline
            corr = (_corr_prefix | (next(_corr_counter) & 0x3FFFFFFFFFFFFFFF)).to_bytes(16, "big")
        is_callback = False
        try:
            if flags & FLAGS_KEEPSERIALIZED:
                from pyroplug.core.blob import blob_call

                object_id, method, vargs, kwargs = blob_call(msg)
            else:
                object_id, method, vargs, kwargs = ser.loads_call(msg.data)
                if type(msg.data) is memoryview:  # a large body: its buffer may serve the next one
                    conn.reader.recycle(msg)
            # the call context, written straight into this thread's dict of the thread-local
            state = current_context.__dict__
            state.update(client=conn, client_sock_addr=getattr(conn, "peer_address", None), seq=seq,
                         annotations=annotations, msg_flags=flags, serializer_id=sid, correlation_id_bytes=corr)
            obj = self.objectsById.get(object_id)
            if obj is None:
                raise errors.DaemonError("unknown object")
            if isinstance(obj, type):
                obj = self._get_instance(obj, conn)
            config = self.config
            members = _members_by_class.get((type(obj), config.REQUIRE_EXPOSE)) or members_of(obj, config.REQUIRE_EXPOSE)
            reply_flags = 0
            if flags & FLAGS_BATCH:
                data: Any = self._run_batch(obj, members, vargs)
                reply_flags = FLAGS_BATCH
            elif method == "__getattr__":
                data = _get_property(obj, members, vargs)
            elif method == "__setattr__":
                _set_property(obj, members, vargs)
                data = None
            else:
                if type(method) is str and method in members.methods:
                    func = getattr(obj, method)
                else:
                    func = _resolve(obj, members, method)
                if kwargs is None:
                    kwargs = {}
                if flags & FLAGS_ONEWAY and self._oneway_pool is not None:
                    # the call context travels as a copy of this thread's state of it (to_global() would
                    # build a UUID for the correlation id)
                    self._oneway_pool.submit(_run_oneway, func, vargs, kwargs, dict(state))
                    return
                is_callback = method in members.callbacks
                try:
                    data = func(*vargs, **kwargs)
                except Exception as exc:  # the user's own error: answered (or logged, for oneway), never fatal
                    raise _UserError(exc) from exc
                if type(data) not in _NOT_STREAMS and not flags & FLAGS_ONEWAY:
                    if self._maybe_stream(conn, ser, seq, data):
                        return
            if flags & FLAGS_ONEWAY:
                return
            parts = value_parts(ser, data) if type(data) is bytes and len(data) >= _GATHER_THRESHOLD else None
            payload = ser.dumps(data) if parts is None else b""
            if state.get("response_annotations") or self._custom_annotations:
                ann = self._reply_annotations(corr)
            elif parts is None and self._plain_replies:
                send = conn.plain_send
                compress = config.COMPRESSION
                max_size = config.MAX_MESSAGE_SIZE
                frame = None if send is None else frame_plain(MSG_RESULT, payload, sid, reply_flags, seq, corr,
                                                              compress, max_size)
                if frame is None or send is None:
                    conn.send_parts(*encode_plain(MSG_RESULT, payload, sid, reply_flags, seq, corr, compress, max_size))
                    return
                try:
                    send(frame)
                except (OSError, ValueError) as exc:
                    raise map_oserror(exc, "sending") from exc
                return
            else:
                ann = {"CORR": corr}
            if parts is None:
                conn.send_parts(
                    *encode_parts(MSG_RESULT, payload, sid, reply_flags, seq, ann, self.__hmac_key,
                                  config.COMPRESSION, config.MAX_MESSAGE_SIZE)
                )
            else:  # a large bytes result, sent without a copy
                conn.send_gather(
                    *encode_gather(MSG_RESULT, parts, sid, reply_flags, seq, ann, self.__hmac_key,
                                   config.COMPRESSION, config.MAX_MESSAGE_SIZE)
                )
        except _UserError as wrapped:
            error = wrapped.error
            if flags & FLAGS_ONEWAY:
                log.warning("exception in oneway call %s: %r", method, error, exc_info=error)
            else:
                log.debug("exception in remote call: %r", error)
                self._send_exception(conn, seq, ser, error, formatTraceback(type(error), error, error.__traceback__, self.config.DETAILED_TRACEBACK))
            if is_callback:
                raise error from None
        except Exception as exc:
            if isinstance(exc, errors.ConnectionClosedError):
                raise
            # A request that did not deserialize or a result too large to send leaves the stream intact:
            # report it and keep serving the connection. Other communication errors close it.
            intact = isinstance(exc, _STREAM_INTACT) or not isinstance(exc, errors.CommunicationError)
            if not flags & FLAGS_ONEWAY and intact:
                log.debug("exception in remote call: %r", exc)
                tb = formatTraceback(detailed=self.config.DETAILED_TRACEBACK)
                self._send_exception(conn, seq, ser, exc, tb)
            elif flags & FLAGS_ONEWAY:
                log.warning("exception in oneway call: %r", exc)
            if is_callback or not intact or isinstance(exc, errors.SecurityError):
                raise

    def _maybe_stream(self, conn: Connection, ser: Serializer, seq: int, data: Any) -> bool:
        if isinstance(data, _LAZY_VIEWS):
            raise errors.PyroError("won't serialize or stream lazy dict iterators, convert to list yourself")
        if not (isinstance(data, Iterator) or inspect.isgenerator(data)):
            return False
        exc = errors.ProtocolError("result of call is an iterator")
        ann = {}
        if self.config.ITER_STREAMING:
            ann["STRM"] = self.streams.open(data, conn).encode()
        self._send_exception(conn, seq, ser, exc, None, FLAGS_ITEMSTREAMRESULT, ann)
        return True

    def _run_batch(self, obj: Any, members: Any, calls: Any) -> list[Any]:
        results: list[Any] = []
        for method, vargs, kwargs in calls:
            func = _resolve(obj, members, method)
            try:
                results.append(func(*vargs, **(kwargs or {})))
            except Exception as exc:
                exc._pyroTraceback = formatTraceback(detailed=self.config.DETAILED_TRACEBACK)  # type: ignore[attr-defined]
                results.append(_ExceptionWrapper(exc))
                break
        return results

    def _send_exception(
        self, conn: Connection, seq: int, ser: Serializer, exc: BaseException, tb: list[str] | None,
        flags: int = 0, annotations: dict[str, bytes] | None = None,
    ) -> None:
        exc._pyroTraceback = tb  # type: ignore[attr-defined]
        try:
            payload = ser.dumps(exc)
        except Exception as problem:
            substitute = errors.PyroError(
                f"Error serializing exception: {problem}. Original exception: {type(exc)}: {_text_of(exc)}"
            )
            substitute._pyroTraceback = tb  # type: ignore[attr-defined]
            payload = ser.dumps(substitute)
        ann = dict(annotations or {})
        current_context.response_annotations = {}
        if self._custom_annotations:
            ann.update(self.annotations())
        conn.send_parts(
            *encode_parts(MSG_RESULT, payload, ser.serializer_id, flags | FLAGS_EXCEPTION, seq, ann, self.__hmac_key,
                          self.config.COMPRESSION)
        )

    # ------------------------------------------------------------------ wire form
    def _wire_state(self) -> tuple:
        return ()

    @classmethod
    def _from_wire_state(cls, state: Any) -> Daemon:
        return cls.__new__(cls)

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:
        loc = getattr(self, "locationStr", None)
        if loc is None:
            return f"<pyroplug.Daemon at {id(self):#x}; unusable>"
        return f"<pyroplug.Daemon at {id(self):#x}; {loc}; {len(self.objectsById)} objects>"

    @staticmethod
    def serveSimple(  # noqa: N802
        objects: dict[Any, str | None],
        host: str | None = None,
        port: int = 0,
        daemon: Daemon | None = None,
        ns: bool = True,
        verbose: bool = True,
    ) -> None:
        """Register ``objects`` (object or class -> name or None) and run the request loop.

        With ``ns=True`` named objects are also registered in the name server found by ``locateNS``;
        otherwise the names are used as object ids.
        """
        from pyroplug.core.servesimple import serve_simple

        serve_simple(objects, host, port, daemon, ns, verbose)


class _UserError(Exception):
    """Carries an exception raised by the called method itself (never a communication failure of ours)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _text_of(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder when the exception's own __str__ fails."""
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__} object>"


def _own_pyro_id(obj: Any) -> str:
    """The _pyroId set on this very object or class (not one inherited from a registered base class)."""
    own = getattr(obj, "__dict__", None)
    if own is not None and not isinstance(own, dict):
        own = dict(own)  # a class's mappingproxy
    if own is not None:
        return own.get("_pyroId", "")
    return getattr(obj, "_pyroId", "")


def _create_instance(clazz: type, creator: Callable[[type], Any] | None) -> Any:
    if creator is None:
        return clazz()
    obj = creator(clazz)
    if not isinstance(obj, clazz):
        raise TypeError("instance creator returned object of different type")
    return obj


def _resolve(obj: Any, members: Any, method: Any) -> Any:
    if type(method) is str and method in members.methods:
        return getattr(obj, method)
    if not isinstance(method, str) or is_private_attribute(method):
        raise AttributeError(f"attempt to access private attribute '{method}'")
    if "." in method:
        raise AttributeError(f"dotted names are not resolved: '{method}'")
    if hasattr(type(obj), method):
        raise AttributeError(f"attempt to access unexposed attribute '{method}'")
    raise AttributeError(f"remote object '{type(obj).__name__}' has no exposed attribute or method '{method}'")


def _get_property(obj: Any, members: Any, vargs: Any) -> Any:
    name = vargs[0] if vargs else None
    if isinstance(name, str) and name in members.attrs:
        return getattr(obj, name)
    raise AttributeError(f"attempt to access unexposed or unknown remote attribute '{name}'")


def _set_property(obj: Any, members: Any, vargs: Any) -> None:
    name = vargs[0] if vargs else None
    if isinstance(name, str) and name in members.writable and len(vargs) == 2:
        setattr(obj, name, vargs[1])
        return None
    raise AttributeError(f"attempt to access unexposed or unknown remote attribute '{name}'")


def _run_oneway(func: Callable[..., Any], vargs: Any, kwargs: dict[str, Any], context: dict[str, Any]) -> None:
    current_context.__dict__.update(context)  # the calling thread's context state, copied
    try:
        func(*vargs, **kwargs)
    except BaseException:  # noqa: B036 - even SystemExit must not end the pool worker uncounted
        log.warning("exception in oneway call %s", getattr(func, "__name__", func), exc_info=sys.exc_info())


def _autoproxy(obj: Any) -> Any:
    """Serializer replace hook: a registered object of an AUTOPROXY daemon travels as a proxy."""
    # Look in the instance dict and the class only: a generic __getattr__ (another proxy, a mock)
    # must not be asked for _pyroDaemon.
    own = getattr(obj, "__dict__", None)
    daemon = own.get("_pyroDaemon") if type(own) is dict else None
    if daemon is None:
        daemon = getattr(type(obj), "_pyroDaemon", None)
    if isinstance(daemon, Daemon) and not daemon._closed and daemon.config.AUTOPROXY and not isinstance(obj, type):
        proxy = daemon.proxyFor(obj)
        # Give the proxy a serializer its daemon accepts: the one of the call being answered (the
        # caller evidently speaks it), else the daemon's default when accepted, else any accepted one.
        ser = daemon._serializers.get(current_context.serializer_id)
        if ser is not None:
            proxy._pyroSerializer = ser.name
        elif not any(s.name == daemon.config.SERIALIZER for s in daemon._serializers.values()):
            proxy._pyroSerializer = min(s.name for s in daemon._serializers.values())
        return proxy
    return obj
