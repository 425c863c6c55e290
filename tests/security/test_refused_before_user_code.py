"""Unaccepted serializers, wrong keys and bad certificates are refused before any user code runs.

Every scenario attacks a daemon whose only user code records itself: method calls, the creation of
session instances and validateHandshake. After each refusal the record must be empty, and the daemon
must still serve a well-configured client (on both server types).
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pyroplug.core import errors
from pyroplug.core.protocol import FLAGS_COMPRESSED, MSG_CONNECT, MSG_CONNECTFAIL, MSG_CONNECTOK, MSG_INVOKE
from pyroplug.testing.certs import PKI
from tests.security.support import (
    KEY,
    KEY_BYTES,
    MARSHAL_ID,
    Log,
    RawClient,
    Served,
    connect_payload,
    handshake,
    invoke_payload,
    marshal_dumps,
    marshal_loads,
    proxy,
    serving,
)

PICKLE_ID = 4

#: set by unpickling the booby-trapped payload: must never happen inside the daemon
TRIGGERED: list[str] = []


def _trap(name: str) -> str:
    TRIGGERED.append(name)
    return name


class Booby:
    """Unpickling this runs code (``_trap``): proof that a refused serializer was never used."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_trap, ("unpickled",))


@dataclass
class Scenario:
    """A daemon configuration, an attack on it, and a good client's proxy settings."""

    daemon: Callable[[PKI], dict[str, Any]]
    attack: Callable[[Served, PKI], None]
    good_client: Callable[[PKI], dict[str, Any]] = field(default=lambda pki: {})
    #: the attack makes a legitimate handshake first (validateHandshake runs), then misbehaves
    after_handshake: bool = False


def _tls_server(pki: PKI) -> dict[str, Any]:
    return dict(SSL=True, SSL_SERVERCERT=pki.server.cert, SSL_SERVERKEY=pki.server.key, SSL_CACERTS=pki.ca.cert,
                SSL_REQUIRECLIENTCERT=True)


def _tls_client(pki: PKI, cert: Any = None) -> dict[str, Any]:
    items: dict[str, Any] = dict(SSL=True, SSL_CACERTS=pki.ca.cert)
    if cert is not None:
        items.update(SSL_CLIENTCERT=cert.cert, SSL_CLIENTKEY=cert.key)
    return items


def _proxy_refused(served: Served, uri_name: str = "counted", **items: Any) -> None:
    uri = served.counted_uri if uri_name == "counted" else served.uri
    with proxy(uri, **items) as p:
        with pytest.raises(errors.CommunicationError):
            p.ping()


def unaccepted_serializer(served: Served, pki: PKI) -> None:
    with proxy(served.counted_uri, SERIALIZER="pickle") as p:
        with pytest.raises(errors.CommunicationError, match="not accepted: 4"):
            p.ping()


def pickle_invoke_after_handshake(served: Served, pki: PKI) -> None:
    """A good marshal handshake, then an INVOKE claiming pickle whose payload runs code when unpickled."""
    with RawClient.to(served.uri) as raw:
        reply = handshake(raw, object_id="counted")
        assert reply is not None and reply.type == MSG_CONNECTOK
        raw.send_message(MSG_INVOKE, pickle.dumps(("counted", "ping", (Booby(),), {})), PICKLE_ID, seq=1)
        assert raw.closed_by_peer()


def pickle_connect(served: Served, pki: PKI) -> None:
    with RawClient.to(served.uri) as raw:
        raw.send_message(MSG_CONNECT, pickle.dumps({"handshake": Booby(), "object": "counted"}), PICKLE_ID)
        reply = raw.receive()
        assert reply is not None and reply.type == MSG_CONNECTFAIL and reply.serializer_id == MARSHAL_ID
        assert "not accepted" in marshal_loads(reply.data)
        assert raw.closed_by_peer()


def invoke_before_handshake(served: Served, pki: PKI) -> None:
    with RawClient.to(served.uri) as raw:
        raw.send_message(MSG_INVOKE, invoke_payload("counted", "ping"), MARSHAL_ID, seq=1)
        assert raw.receive() is None  # closed


def wrong_key(served: Served, pki: PKI) -> None:
    _proxy_refused(served, hmac="not the key")


def missing_key(served: Served, pki: PKI) -> None:
    _proxy_refused(served)


def unexpected_key(served: Served, pki: PKI) -> None:
    _proxy_refused(served, hmac=KEY)


def forged_invoke(served: Served, pki: PKI) -> None:
    """A good handshake with the key, then an INVOKE signed with another key."""
    with RawClient.to(served.uri, hmac_key=KEY_BYTES) as raw:
        reply = handshake(raw, KEY_BYTES, object_id="counted")
        assert reply is not None and reply.type == MSG_CONNECTOK
        raw.send_message(MSG_INVOKE, invoke_payload("counted", "ping"), MARSHAL_ID, seq=1, hmac_key=b"forged")
        assert raw.closed_by_peer()


def compressed_bomb(served: Served, pki: PKI) -> None:
    bomb = zlib.compress(marshal_dumps(("counted", "ping", ("\0" * 32_000_000,), {})), 9)
    with RawClient.to(served.uri) as raw:
        raw.send_message(MSG_CONNECT, connect_payload("counted"), MARSHAL_ID)
        assert (raw.receive() or pytest.fail("no CONNECTOK")).type == MSG_CONNECTOK
        raw.send_message(MSG_INVOKE, bomb, MARSHAL_ID, FLAGS_COMPRESSED, seq=1)
        assert raw.closed_by_peer()


def missing_client_cert(served: Served, pki: PKI) -> None:
    _proxy_refused(served, **_tls_client(pki))


def untrusted_client_cert(served: Served, pki: PKI) -> None:
    _proxy_refused(served, **_tls_client(pki, pki.rogue_client))


def plain_client_at_tls_daemon(served: Served, pki: PKI) -> None:
    _proxy_refused(served)


SCENARIOS = {
    "unaccepted-serializer": Scenario(lambda pki: {}, unaccepted_serializer),
    "pickle-connect": Scenario(lambda pki: {}, pickle_connect),
    "pickle-invoke-after-handshake": Scenario(lambda pki: {}, pickle_invoke_after_handshake, after_handshake=True),
    "invoke-before-handshake": Scenario(lambda pki: {}, invoke_before_handshake),
    "compressed-bomb": Scenario(lambda pki: {"MAX_MESSAGE_SIZE": 1_000_000}, compressed_bomb, after_handshake=True),
    "wrong-hmac-key": Scenario(lambda pki: {"hmac": KEY}, wrong_key, lambda pki: {"hmac": KEY}),
    "missing-hmac-key": Scenario(lambda pki: {"hmac": KEY}, missing_key, lambda pki: {"hmac": KEY}),
    "unexpected-hmac-key": Scenario(lambda pki: {}, unexpected_key),
    "forged-invoke": Scenario(lambda pki: {"hmac": KEY}, forged_invoke, lambda pki: {"hmac": KEY}, after_handshake=True),
    "missing-client-cert": Scenario(_tls_server, missing_client_cert, lambda pki: _tls_client(pki, pki.client)),
    "untrusted-client-cert": Scenario(_tls_server, untrusted_client_cert, lambda pki: _tls_client(pki, pki.client)),
    "plain-client-at-tls-daemon": Scenario(_tls_server, plain_client_at_tls_daemon,
                                           lambda pki: _tls_client(pki, pki.client)),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_refused_before_user_code(servertype: str, pki: PKI, name: str) -> None:
    scenario = SCENARIOS[name]
    TRIGGERED.clear()
    with serving(servertype, **scenario.daemon(pki)) as served:
        scenario.attack(served, pki)
        expected = [("handshake", "hello")] if scenario.after_handshake else []
        assert served.log == expected, f"user code ran for a refused client: {served.log}"
        assert len(served.daemon.annotation_calls) == len(expected)  # the CONNECTOK of a legitimate handshake
        assert TRIGGERED == []
        log: Log = served.log
        with proxy(served.counted_uri, **scenario.good_client(pki)) as p:  # still serving good clients
            assert p.ping() == "pong"
        assert log == [*expected, ("handshake", "hello"), ("instance",), ("ping",)]
