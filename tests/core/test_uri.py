"""URI parsing and formatting, compared input by input with stock Pyro4 4.82."""

from __future__ import annotations

import pickle

import pytest

from pyroplug.core import errors
from pyroplug.core.config import config
from pyroplug.core.uri import URI

Pyro4_core = pytest.importorskip("Pyro4.core")
Pyro4_errors = pytest.importorskip("Pyro4.errors")


def outcome(cls, text):
    """What a URI class makes of ``text``: its fields, or the error's class name and message."""
    try:
        uri = cls(text)
    except Exception as exc:  # noqa: BLE001 - we compare whatever comes out
        return ("error", type(exc).__name__, str(exc))
    obj = sorted(uri.object) if isinstance(uri.object, set) else uri.object
    text_form = str(uri) if uri.protocol != "PYROMETA" else None  # Pyro4 joins the set in set order
    return ("ok", uri.protocol, obj, uri.sockname, uri.host, uri.port, uri.location, text_form)


VALID = [
    "PYRO:obj@localhost:9999",
    "pyro:obj@host:1",
    "PyRo:obj@[::1]:9999",
    "PYRO:obj@[fe80::1%4]:1",
    "PYRO:obj@[2001:db8::ff00:42:8329]:65535",
    "PYRO:obj@[abc]:1",  # hex digits only: Pyro4 takes it as a (bad) ipv6 host
    "PYRO:obj@./u:/tmp/sock",
    "PYRO:obj@./u:sock",
    "PYRO:obj@./u:\0abstract",  # Linux abstract namespace socket
    "PYRO:Pyro.NameServer@127.0.0.1:9090",
    "PYRO:obj_5d1a2f3b@host.example.com:5555",
    "PYRONAME:name",
    "pyroname:name",
    "PYRONAME:name@host",
    "PYRONAME:name@host:1234",
    "PYRONAME:name@host:",
    "PYRONAME:name@[::1]",
    "PYRONAME:name@[::1]:",
    "PYRONAME:name@./u:/x",
    "PYROMETA:m",
    "PYROMETA:a,b,c",
    "PYROMETA:m@host",
    "PYROMETA:m@host:5",
    "PYROMETA:m1,m2@./u:/tmp/ns",
    "PYRO:obj@:9999",  # empty host: no location
    "PYRO:obj@host: 1",
    "PYRO:obj@host:1 ",
    "PYRO:obj@h:1\n",
    "PYRO:obj@h:1_0",
    "PYRO:obj@host:99999999",
    "PYRO:obj@host:-1",
    "PYRO:a@b@c:1",
]

INVALID = [
    "",
    "PYRO:",
    "PYRO:obj",
    "PYRO:obj@",
    "PYRO:@host:1",
    "PYRO:o bj@h:1",
    "PYRO:ob\nj@h:1",
    " PYRO:obj@h:1",
    "http://x",
    "PYROX:obj@h:1",
    "PYRONAMEX:obj",
    "PYRO:obj@host",
    "PYRO:obj@host:abc",
    "PYRO:obj@host:1:2",
    "PYRO:obj@h:0x10",
    "PYRO:obj@./u:",
    "PYRO:obj@./u:a:b",
    "PYRONAME:n@./u:",
    "PYRO:obj@[[::1]]:1",
    "PYRO:obj@[fe80::1%eth0]:1",
    "PYRO:obj@[xyz]:1",
    "PYRO:obj@[]:1",
    "PYRO:obj@[::1]",
    "PYRO:obj@[::1]:",
    "PYROMETA:a,b , c",
    "PYRONAME:name@host:port",
]


@pytest.mark.parametrize("text", VALID)
def test_valid_uris_parse_like_pyro4(text):
    ours = outcome(URI, text)
    assert ours[0] == "ok"
    assert ours == outcome(Pyro4_core.URI, text)


@pytest.mark.parametrize("text", INVALID)
def test_invalid_uris_fail_like_pyro4(text):
    ours = outcome(URI, text)
    assert ours[0] == "error"
    assert ours == outcome(Pyro4_core.URI, text)
    with pytest.raises(errors.PyroError):
        URI(text)


#: where pyroplug deliberately differs from Pyro4: text -> (what Pyro4 does, what we do)
DIVERGENCES = {
    # Pyro4 ignores text after the ipv6 port
    "PYRO:obj@[::1]:99junk": ("ok", ("error", "PyroError", "invalid port in uri, port=99junk")),
    "PYRONAME:n@[::1]junk": ("ok", ("error", "PyroError", "invalid uri (location)")),
    # ./KIND:address locations name plugin transports; Pyro4 reads them as a host called './x'
    "PYRO:obj@./x:addr": ("error", ("ok", "PYRO", "obj", "x:addr", None, None, "./x:addr", "PYRO:obj@./x:addr")),
    "PYRO:obj@./ws:host:8080": (
        "error",
        ("ok", "PYRO", "obj", "ws:host:8080", None, None, "./ws:host:8080", "PYRO:obj@./ws:host:8080"),
    ),
    # 'tcp' is the kind of host:port locations, it cannot be spelled as ./tcp:
    "PYRO:obj@./tcp:a": ("error", ("error", "PyroError", "invalid uri (location)")),
}


@pytest.mark.parametrize("text", DIVERGENCES)
def test_documented_divergences(text):
    pyro4_kind, ours = DIVERGENCES[text]
    assert outcome(Pyro4_core.URI, text)[0] == pyro4_kind
    assert outcome(URI, text) == ours


def test_pyroname_default_port_follows_ns_port(monkeypatch):
    monkeypatch.setattr(config, "NS_PORT", 4321)
    assert URI("PYRONAME:x@nshost").port == 4321
    assert URI("PYROMETA:a@nshost").port == 4321
    assert URI("PYRONAME:x@nshost:77").port == 77
    assert URI("PYRONAME:x").port is None
    with pytest.raises(errors.PyroError, match="port=None"):
        URI("PYRO:x@host")  # PYRO has no default port


def test_pyrometa_sets():
    uri = URI("PYROMETA:role:db,zone:eu,role:db@host:1")
    assert uri.object == {"role:db", "zone:eu"}
    assert isinstance(uri.object, set)
    assert str(uri) == "PYROMETA:role:db,zone:eu@host:1"
    assert URI(str(uri)) == uri


def test_pyrometa_hash_is_consistent_with_equality():
    names = [f"meta{i}" for i in range(50)]
    a = URI("PYROMETA:" + ",".join(names))
    b = URI("PYROMETA:" + ",".join(reversed(names)))
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


def test_equality_and_hash():
    a = URI("PYRO:obj@host:1")
    assert a == URI("pyro:obj@host:1")
    assert hash(a) == hash(URI("pyro:obj@host:1"))
    assert a != URI("PYRO:obj@host:2")
    assert a != URI("PYRONAME:obj@host:1")
    assert a != "PYRO:obj@host:1"
    assert not (a == object())
    assert hash(a) == hash(Pyro4_core.URI("PYRO:obj@host:1"))  # same tuple, same hash
    assert len({a, URI("PYRO:obj@host:1"), URI("PYRO:other@host:1")}) == 2


def test_copy_constructor():
    original = URI("PYRO:obj@./u:/tmp/s")
    copy = URI(original)
    assert copy == original and copy is not original
    assert (copy.protocol, copy.object, copy.sockname, copy.host, copy.port) == ("PYRO", "obj", "/tmp/s", None, None)


@pytest.mark.parametrize("bad", [None, 42, b"PYRO:obj@host:1", ["PYRO:obj@h:1"]])
def test_wrong_type_is_type_error(bad):
    with pytest.raises(TypeError, match="uri parameter object is of wrong type"):
        URI(bad)
    with pytest.raises(TypeError):
        Pyro4_core.URI(bad)


def test_is_unixsock_location():
    assert URI.isUnixsockLocation("./u:/tmp/x")
    assert not URI.isUnixsockLocation("localhost:9090")
    assert not URI.isUnixsockLocation("./x:addr")
    assert Pyro4_core.URI.isUnixsockLocation("./u:/tmp/x")


@pytest.mark.parametrize(
    ("text", "kind", "address"),
    [
        ("PYRO:o@host:1", "tcp", None),
        ("PYRO:o@[::1]:1", "tcp", None),
        ("PYRO:o@./u:/tmp/sock", "u", "/tmp/sock"),
        ("PYRO:o@./u:\0abstract", "u", "\0abstract"),
        ("PYRO:o@./mem:channel-1", "mem", "channel-1"),
        ("PYRO:o@./ws:host:8080", "ws", "host:8080"),
        ("PYRO:o@./My_Kind2:x", "My_Kind2", "x"),
        ("PYRONAME:o@./mem:ns", "mem", "ns"),
    ],
)
def test_location_kinds(text, kind, address):
    uri = URI(text)
    assert uri.location_kind == kind
    assert uri.address == address
    assert str(URI(str(uri))) == str(uri)
    assert URI(str(uri)) == uri


def test_plugin_kind_needs_an_address():
    with pytest.raises(errors.PyroError, match="invalid uri"):
        URI("PYRO:o@./mem:")


@pytest.mark.parametrize("text", ["PYRO:o@host:1", "PYRO:o@[::1]:1", "PYRO:o@./u:/s", "PYRO:o@./mem:c", "PYRONAME:n"])
def test_state_is_pyro4s_five_tuple_and_pickles(text):
    uri = URI(text)
    state = uri._wire_state()
    assert state == (uri.protocol, uri.object, uri.sockname, uri.host, uri.port)
    if uri.location_kind in ("tcp", "u"):
        pyro4_uri = Pyro4_core.URI(text)
        assert state == pyro4_uri.__getstate__()
    again = pickle.loads(pickle.dumps(uri))
    assert again == uri and type(again) is URI
    assert URI._from_wire_state(list(state)) == uri


def test_from_wire_state_rebuilds_pyrometa_set_and_rejects_garbage():
    uri = URI._from_wire_state(["PYROMETA", ["a", "b"], None, "host", 9090])
    assert uri.object == {"a", "b"}
    assert uri == URI("PYROMETA:a,b@host:9090")
    for bad in (None, "PYRO:o@h:1", ("PYRO", "o"), [1, 2, 3, 4, 5, 6]):
        with pytest.raises(errors.SerializeError):
            URI._from_wire_state(bad)


def test_repr_and_as_string():
    uri = URI("PYRO:obj@[::1]:5")
    assert uri.asString() == str(uri) == "PYRO:obj@[::1]:5"
    assert "PYRO:obj@[::1]:5" in repr(uri)


def test_slots_keep_the_object_small():
    uri = URI("PYRO:obj@h:1")
    with pytest.raises(AttributeError):
        uri.extra = 1  # type: ignore[attr-defined]


def test_parsed_pyro_uris_are_independent_objects():
    text = "PYRO:cached.object@example.com:4444"
    first, second = URI(text), URI(text)
    assert first == second and first is not second
    first.host, first.port = "elsewhere", 1
    third = URI(text)
    assert (third.host, third.port, second.host) == ("example.com", 4444, "example.com")
    assert str(third) == text
