"""Call context, handshakes, serializer refusal, pings and unix sockets across the Pyro4/pyroplug boundary.

Correlation ids and custom annotations (``current_context.annotations``, ``_pyroAnnotations``,
``current_context.response_annotations``, ``_pyroResponseAnnotations`` and a ``Daemon.annotations``
override), ``validateHandshake`` accepting and refusing, ``_pyroValidateHandshake``, a daemon
refusing serializers it does not accept, MSG_PING, and the same calls over unix sockets.
"""

from __future__ import annotations

import uuid

import pytest

from tests.interop.support import SERIALIZERS, Cell, short

pytestmark = pytest.mark.interop

CORRELATION = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")


@pytest.mark.parametrize("ser", SERIALIZERS)
def test_correlation_ids(cell: Cell, ser: str) -> None:
    r = cell.run(
        """
p = proxy(uri, ser)
ctx = Pyro4.current_context
ctx.correlation_id = corr
seen = p.correlation()
echoed = bytes(ctx.response_annotations["CORR"])
again = p.correlation()
ctx.correlation_id = None
fresh = [p.correlation(), p.correlation()]
result = {"seen": seen, "echoed": uuid.UUID(bytes=echoed), "again": again, "fresh": fresh,
          "fresh_reply": "CORR" in ctx.response_annotations}
""",
        ser=ser, corr=CORRELATION,
    )
    assert r["seen"] == str(CORRELATION), "the daemon adopts the client's CORR"
    assert r["echoed"] == CORRELATION, "and attaches it to the reply"
    assert r["again"] == str(CORRELATION), "the client keeps sending it until cleared"
    first, second = (uuid.UUID(x) for x in r["fresh"])
    assert first.version == second.version == 4 and first != second != CORRELATION, "else a new uuid4 per call"
    assert r["fresh_reply"], "replies carry CORR even when the client sent none"


@pytest.mark.parametrize("ser", SERIALIZERS)
def test_custom_annotations_both_ways(cell: Cell, ser: str) -> None:
    r = cell.run(
        """
class AnnotatingProxy(Pyro4.Proxy):
    seen_responses = []
    def _pyroAnnotations(self):
        return {"XSUB": b"from-subclass"}
    def _pyroResponseAnnotations(self, annotations, msgtype):
        self.seen_responses.append((msgtype, sorted(annotations)))

ctx = Pyro4.current_context
p = proxy(uri, ser)
ctx.annotations = {"XCTX": b"once", "XBIN": bytes(range(256))}
first = p.annotations_seen()
second = p.annotations_seen()
reply = p.respond_annotated("XRES", "from the method")
response = {k: bytes(v) for k, v in ctx.response_annotations.items() if k != "CORR"}
after = p.nothing()
later = {k: bytes(v) for k, v in ctx.response_annotations.items() if k != "CORR"}
a = AnnotatingProxy(uri)
a._pyroSerializer = ser
sub = a.annotations_seen()
c = proxy(custom_uri, ser)
custom = c.nothing()
custom_response = {k: bytes(v) for k, v in ctx.response_annotations.items() if k != "CORR"}
ca = AnnotatingProxy(custom_uri)
ca._pyroSerializer = ser
AnnotatingProxy.seen_responses = []
ca.nothing()
connect_and_call = list(AnnotatingProxy.seen_responses)
AnnotatingProxy.seen_responses = []
catch(ca.fail, "KeyError")
list(ca.gen(1))
result = {"exception_and_stream": AnnotatingProxy.seen_responses, "first": first, "second": second, "reply": reply, "response": response, "later": later,
          "sub": sub, "custom_response": custom_response, "hook": connect_and_call}
""",
        ser=ser, custom_uri=cell.uris["custom"],
    )
    assert r["first"] == {"XCTX": "once", "XBIN": bytes(range(256)).decode("latin-1")}
    assert r["second"] == {}, "current_context.annotations are sent with one call, then cleared"
    assert r["reply"] == "annotated"
    assert r["response"] == {"XRES": b"from the method"}, "current_context.response_annotations of the method"
    assert r["later"] == {}, "response annotations belong to one reply"
    assert r["sub"] == {"XSUB": "from-subclass"}, "Proxy._pyroAnnotations() adds to every request"
    assert r["custom_response"] == {"XSRV": cell.daemon.encode()}, "Daemon.annotations() adds to every reply"
    # the hook sees CONNECTOK (2) and RESULT (5) annotations, each with CORR and the daemon's XSRV
    assert r["hook"] == [(2, ["CORR", "XSRV"]), (5, ["CORR", "XSRV"])], r["hook"]
    # no CORR on exception results nor on the stream-start result (PYRO4-PROTOCOL 2.5), STRM on the latter
    assert r["exception_and_stream"] == [
        (5, ["XSRV"]),  # the KeyError
        (5, ["STRM", "XSRV"]),  # gen(1): "result of call is an iterator"
        (5, ["CORR", "XSRV"]),  # item 0
        (5, ["XSRV"]),  # StopIteration
    ], r["exception_and_stream"]


@pytest.mark.parametrize("ser", SERIALIZERS)
def test_handshakes(cell: Cell, ser: str) -> None:
    r = cell.run(
        """
class Checking(Pyro4.Proxy):
    responses = []
    def _pyroValidateHandshake(self, response):
        Checking.responses.append(response)
        if response == "hello" and self._pyroHandshake == "refuse-the-reply":
            raise ValueError("client refuses the daemon's reply")

def connect(handshake, cls=Checking):
    p = cls(uri)
    p._pyroSerializer = ser
    p._pyroHandshake = handshake
    p._pyroBind()
    return p.add(1, 2)

result = {
    "default": connect("hello"),
    "token": connect({"token": "sesame"}),
    "refused": catch(connect, "wrong"),
    "refused_dict": catch(connect, {"token": "guess"}),
    "responses": list(Checking.responses),
}
result["client_refuses"] = catch(connect, "hello-but-refuse")
""",
        ser=ser, uri=cell.uris["custom"],
    )
    assert r["default"] == 3 and r["token"] == 3
    assert r["responses"] == ["hello", {"welcome": cell.daemon}], "validateHandshake's result reaches the client"
    for key, shown in (("refused", "'wrong'"), ("refused_dict", "{'token': 'guess'}")):
        refused = r[key]
        assert short(refused["__exception__"]) == "CommunicationError", refused
        assert f"rejected: handshake refused: {shown}" in refused["str"], refused
    # daemon refused -> the client's error names the location
    assert "connection to " in r["refused"]["str"]


def test_client_side_handshake_validation(cell: Cell) -> None:
    r = cell.run(
        """
class Refusing(Pyro4.Proxy):
    def _pyroValidateHandshake(self, response):
        raise ValueError("client refuses %r" % (response,))
p = Refusing(uri)
result = catch(p._pyroBind)
"""
    )
    assert short(r["__exception__"]) == "ValueError" and r["args"] == ("client refuses 'hello'",)


@pytest.mark.parametrize("ser", [s for s in SERIALIZERS if s != "serpent"])
def test_serializer_not_accepted(cell: Cell, ser: str) -> None:
    """The ``strict`` daemon accepts serpent only: CONNECTFAIL (in marshal) with the daemon's reason."""
    ids = {"json": 2, "marshal": 3, "pickle": 4, "dill": 5, "msgpack": 6}
    r = cell.run(
        """
p = proxy(uri, ser)
refused = catch(p._pyroBind)
q = proxy(uri, "serpent")
result = [refused, q.add(2, 3)]
""",
        ser=ser, uri=cell.uris["strict"],
    )
    refused, five = r
    assert short(refused["__exception__"]) == "CommunicationError", refused
    assert f"rejected: message used serializer that is not accepted: {ids[ser]}" in refused["str"], refused
    assert five == 5


def test_ping_message(cell: Cell) -> None:
    """MSG_PING after the handshake: the daemon answers 'pong' with the same seq and serializer id (42,
    which no serializer has: nothing is deserialized) and CORR, and the connection goes on."""
    r = cell.run(
        """
m = Pyro4.message
p = proxy(uri)
p._pyroBind()
conn = p._pyroConnection
if FLAVOR == "pyro4":
    m.Message.ping(conn)  # the stock helper
    conn.send(m.Message(m.MSG_PING, b"ping", 42, 0, 7).to_bytes())
    reply = m.Message.recv(conn, [m.MSG_PING])
else:  # pyroplug's sans-IO codec and connection
    conn.send_parts(*m.encode_parts(m.MSG_PING, b"ping", 42, 0, 7, {}, None))
    reply = conn.recv_message()
result = [reply.type, bytes(reply.data), reply.serializer_id, reply.seq, reply.flags, sorted(reply.annotations),
          p.add(1, 1)]
"""
    )
    assert r == [6, b"pong", 42, 7, 0, ["CORR"], 2]


@pytest.mark.parametrize("ser", SERIALIZERS)
def test_unix_socket(cell: Cell, ser: str) -> None:
    r = cell.run(
        """
p = proxy(uri, ser)
p.clear_log()
p.record("over unix")
b = Pyro4.batch(p)
b.add(1, 1)
b.add(2, 2)
result = {
    "echo": p.echo_args("x", n=[1, 2.5]),
    "error": catch(p.fail, "KeyError", "unix"),
    "stream": list(p.gen(3)),
    "log": p.wait_log(1),
    "uri": str(p._pyroUri),
    "batch": catch(b) if ser == "marshal" and FLAVOR == "pyro4" else list(b()),
    "item": p.make_item("u").get_name() if ser != "marshal" else None,
}
""",
        ser=ser, uri=cell.uris["unix"],
    )
    assert r["uri"].startswith("PYRO:service@./u:")
    assert r["echo"] == [["x"], {"n": [1, 2.5]}]
    assert short(r["error"]["__exception__"]) == "KeyError" and "in fail" in r["error"]["remote_traceback"]
    assert r["stream"] == [0, 1, 2]
    assert r["log"] == ["over unix"]
    if ser == "marshal" and cell.client == "pyro4":
        assert short(r["batch"]["__exception__"]) == "AttributeError"  # the stock marshal client bug
    else:
        assert r["batch"] == [2, 4]
    if ser != "marshal":
        assert r["item"] == "u", "autoproxied objects of a unix-socket daemon are reachable"
