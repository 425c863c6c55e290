"""SerializedBlob pass-through (FLAGS_KEEPSERIALIZED), current_context annotations, correlation ids,
track_resource and client_sock_addr."""

from __future__ import annotations

import marshal
import threading
import uuid
from typing import Any

import pytest

from pyroplug import errors
from pyroplug.core.blob import SerializedBlob
from pyroplug.core.context import current_context
from pyroplug.core.daemon import Daemon
from pyroplug.core.expose import expose
from pyroplug.core.protocol import FLAGS_KEEPSERIALIZED, MSG_INVOKE
from pyroplug.core.proxy import Proxy
from tests.features.services import Service
from tests.features.support import serve, wait_until


class RecordingDaemon(Daemon):
    """Keeps every INVOKE message it handles (flags, annotations, raw payload)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.messages: list[Any] = []

    def handle_message(self, conn: Any, msg: Any) -> None:
        if msg.type == MSG_INVOKE:
            self.messages.append((msg.flags, dict(msg.annotations), bytes(msg.data), msg.serializer_id))
        super().handle_message(conn, msg)


class Payload:
    """A payload that counts how often it is unpickled."""

    unpickled = 0

    def __init__(self, value: str) -> None:
        self.value = value

    def __setstate__(self, state: dict[str, Any]) -> None:
        type(self).unpickled += 1
        self.__dict__.update(state)


@expose
class Sink:
    """The final receiver: decodes the blob."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    def receive(self, blob: Any) -> Any:
        assert isinstance(blob, SerializedBlob)
        self.received.append(blob)
        data = blob.deserialized()
        return {"info": blob.info, "data": data if not isinstance(data, Payload) else data.value}

    def plain(self, value: Any) -> Any:
        return value


@expose
class Router:
    """Forwards blobs to the sink without decoding them; counts decodes (there must be none)."""

    def __init__(self, sink_uri: Any, serializer: str | None = None) -> None:
        self.sink_uri = sink_uri
        self.serializer = serializer
        self.seen: list[Any] = []

    def forward(self, blob: Any) -> Any:
        self.seen.append((type(blob).__name__, blob.info, blob._contains_blob))
        with Proxy(self.sink_uri) as sink:
            if self.serializer:
                sink._pyroSerializer = self.serializer
            return sink.receive(blob)


@pytest.mark.parametrize("serializer", ["serpent", "json", "msgpack", "marshal"])
def test_router_forwards_blob_without_deserializing(servertype: str, serializer: str) -> None:
    sink = Sink()
    with serve(servertype, RecordingDaemon, {"sink": sink}, SERIALIZERS_ACCEPTED={serializer}) as sink_served:
        router = Router(sink_served.daemon.uriFor("sink"), serializer)
        with serve(servertype, RecordingDaemon, {"router": router}, SERIALIZERS_ACCEPTED={serializer}) as router_served:
            with router_served.proxy("router") as p:
                p._pyroSerializer = serializer
                data = {"numbers": [1, 2, 3], "text": "hello"}
                result = p.forward(SerializedBlob("the-info", data))
            assert result == {"info": "the-info", "data": data}
            assert router.seen == [("SerializedBlob", "the-info", True)]
            assert isinstance(router_served.daemon, RecordingDaemon) and isinstance(sink_served.daemon, RecordingDaemon)
            (rflags, rann, rdata, rsid), = [m for m in router_served.daemon.messages if m[0] & FLAGS_KEEPSERIALIZED]
            (sflags, sann, sdata, ssid), = [m for m in sink_served.daemon.messages if m[0] & FLAGS_KEEPSERIALIZED]
            assert marshal.loads(rann["BLBI"]) == ("the-info", "router", "forward")
            assert marshal.loads(sann["BLBI"]) == ("the-info", "sink", "receive")
            assert sdata == rdata and ssid == rsid, "the sink got the client's payload bytes untouched"
            assert isinstance(sink.received[0], SerializedBlob) and sink.received[0].info == "the-info"


def test_blob_is_decoded_once_at_the_sink() -> None:
    """The router never decodes the payload: with pickle, the payload object is rebuilt exactly once."""
    Payload.unpickled = 0
    sink = Sink()
    with serve("thread", objects={"sink": sink}, SERIALIZERS_ACCEPTED={"pickle"}) as sink_served:
        router = Router(sink_served.daemon.uriFor("sink"), "pickle")
        with serve("thread", objects={"router": router}, SERIALIZERS_ACCEPTED={"pickle"}) as router_served, \
                router_served.proxy("router") as p:
            p._pyroSerializer = "pickle"
            p.forward(SerializedBlob("object", Payload("inside")))
    assert Payload.unpickled == 1, "decoded by the sink's deserialized() only"
    assert isinstance(sink.received[0].deserialized(), Payload)


def test_forwarding_with_another_serializer_reencodes() -> None:
    """Pyro4 sent the original bytes with the forwarding proxy's serializer id; pyroplug re-encodes."""
    sink = Sink()
    with serve("thread", objects={"sink": sink}) as sink_served:
        router = Router(sink_served.daemon.uriFor("sink"), serializer="json")
        with serve("thread", objects={"router": router}) as router_served, router_served.proxy("router") as p:
            p._pyroSerializer = "serpent"
            assert p.forward(SerializedBlob("mixed", [1, "two"])) == {"info": "mixed", "data": [1, "two"]}


def test_blob_rules() -> None:
    blob = SerializedBlob("info", {"a": 1})
    assert blob.deserialized() == {"a": 1} and blob.info == "info"
    with pytest.raises(TypeError):
        SerializedBlob("info", b"not a message", is_blob=True)
    with serve("thread", objects={"sink": Sink()}) as served, served.proxy("sink") as p:
        with pytest.raises(errors.SerializeError, match="only argument"):
            p.receive(blob, 2)
        with pytest.raises(errors.SerializeError, match="only argument"):
            p.receive(blob, extra=1)
        assert p.receive(blob) == {"info": "info", "data": {"a": 1}}
        assert p.plain(5) == 5


# ---------------------------------------------------------------- call context
def test_annotations_both_ways(servertype: str) -> None:
    with serve(servertype, objects={"svc": Service()}) as served, served.proxy("svc") as p:
        current_context.annotations = {"XONE": b"first call only"}
        try:
            first = p.context()
            second = p.context()
            assert first["annotations"] == {"XONE": "first call only"}
            assert second["annotations"] == {}
            assert p.annotate_response("XRES", "from the server") == "ok"
            assert current_context.response_annotations["XRES"] == b"from the server"
            assert "CORR" in current_context.response_annotations
            p.add(1, 1)
            assert "XRES" not in current_context.response_annotations
        finally:
            current_context.annotations = {}
            current_context.response_annotations = {}


def test_context_fields_and_client_sock_addr(servertype: str) -> None:
    with serve(servertype, objects={"svc": Service()}) as served, served.proxy("svc") as p:
        p._pyroBind()
        seen = p.context()
        local = p._pyroConnection.sock.getsockname()  # type: ignore[union-attr]
        assert seen["sock_addr"] == list(local), "client_sock_addr is the client's end of the connection"
        assert seen["has_client"] and seen["seq"] == p._pyroSeq
        assert seen["serializer_id"] == p._ser.serializer_id  # type: ignore[union-attr]
        assert seen["flags"] == 0


def test_correlation_id_set_seen_and_propagated(servertype: str) -> None:
    """The client's correlation id reaches the server and every call the server makes meanwhile."""
    corr = uuid.uuid4()

    @expose
    class Relay:
        def __init__(self, target_uri: Any) -> None:
            self.target_uri = target_uri

        def relay(self) -> list[Any]:
            mine = str(current_context.correlation_id)
            with Proxy(self.target_uri) as target:
                return [mine, target.context()["corr"]]

    with serve(servertype, objects={"svc": Service()}) as end:
        with serve(servertype, objects={"relay": Relay(end.daemon.uriFor("svc"))}) as middle:
            with middle.proxy("relay") as p:
                current_context.correlation_id = corr
                try:
                    assert p.relay() == [str(corr), str(corr)]
                    assert current_context.response_annotations["CORR"] == corr.bytes
                finally:
                    current_context.correlation_id = None
                first, second = p.relay()
                assert first == second != str(corr), "a fresh id per call, still propagated"
                assert uuid.UUID(first).version == 4


def test_track_resource_closed_at_disconnect(servertype: str) -> None:
    svc = Service()
    with serve(servertype, objects={"svc": svc}) as served:
        with served.proxy("svc") as p:
            assert p.open_resource("file-1") == "file-1"
            p.open_resource("file-2")
            p.open_then_untrack("kept")
            assert svc.resources_closed == []
        assert wait_until(lambda: sorted(svc.resources_closed) == ["file-1", "file-2"])
        assert "kept" not in svc.resources_closed
    with pytest.raises(LookupError):
        threading.Thread(target=current_context.track_resource, args=(object(),)).run()


def test_to_global_and_from_global_copy_the_context() -> None:
    current_context.correlation_id = uuid.UUID(int=5)
    current_context.annotations = {"XGLO": b"1"}
    try:
        copied = current_context.to_global()
    finally:
        current_context.correlation_id = None
        current_context.annotations = {}
    seen: list[Any] = []

    def other() -> None:
        current_context.from_global(copied)
        seen.append((current_context.correlation_id, current_context.annotations))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [(uuid.UUID(int=5), {"XGLO": b"1"})]


def test_nested_call_of_an_hmac_daemon_to_a_keyless_one() -> None:
    """A call made inside a call does not forward the incoming request's HMAC annotation (Pyro4 did,
    so a keyed daemon's method could not call a keyless daemon: "hmac key config not symmetric")."""

    class KeyedDaemon(Daemon):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pyroHmacKey = b"secret"

    @expose
    class Relay:
        def __init__(self, target_uri: Any) -> None:
            self.target_uri = target_uri

        def relay(self) -> Any:
            with Proxy(self.target_uri) as target:
                return target.add(1, 2)

    with serve("thread", objects={"svc": Service()}) as end:
        with serve("thread", KeyedDaemon, {"relay": Relay(end.daemon.uriFor("svc"))}) as middle:
            with middle.proxy("relay") as p:
                p._pyroHmacKey = b"secret"
                current_context.annotations = {"XFWD": b"forwarded"}
                try:
                    assert p.relay() == 3
                finally:
                    current_context.annotations = {}
