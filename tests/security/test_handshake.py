"""Custom handshakes: _pyroHandshake data, Daemon.validateHandshake answering or denying, and
Proxy._pyroValidateHandshake refusing the connection (both server types, with and without METADATA)."""

from __future__ import annotations

from typing import Any

import pytest

from pyroplug.core import errors
from pyroplug.core.proxy import Proxy
from tests.security.support import proxy, serving, wait_until


def token_validator(conn: Any, data: Any) -> Any:
    """Accept ``{"token": "sesame"}`` (answering a welcome with the client's address), deny anything else."""
    if isinstance(data, dict) and data.get("token") == "sesame":
        return {"welcome": True, "peer_known": conn.peer_address is not None}
    raise PermissionError(f"no entry for {data!r}")


class CheckingProxy(Proxy):
    """Keeps every handshake response; refuses the daemon unless it welcomed us."""

    def _pyroValidateHandshake(self, response: Any) -> None:  # noqa: N802 - Pyro4 API
        self.__dict__.setdefault("_responses", []).append(response)
        if not (isinstance(response, dict) and response.get("welcome")):
            raise errors.SecurityError(f"untrusted daemon: {response!r}")


@pytest.mark.parametrize("metadata", [True, False])
def test_custom_data_both_ways(servertype: str, metadata: bool) -> None:
    with serving(servertype, validator=token_validator) as served:
        with proxy(served.uri, cls=CheckingProxy, METADATA=metadata) as p:
            p._pyroHandshake = {"token": "sesame"}
            assert p.add(1, 2) == 3
            assert p.__dict__["_responses"] == [{"welcome": True, "peer_known": True}]
        assert served.log[0] == ("handshake", {"token": "sesame"})


@pytest.mark.parametrize("metadata", [True, False])
def test_daemon_denies(servertype: str, metadata: bool) -> None:
    with serving(servertype, validator=token_validator) as served:
        with proxy(served.uri, METADATA=metadata) as p:
            p._pyroHandshake = {"token": "guess"}
            with pytest.raises(errors.CommunicationError) as info:
                p.add(1, 2)
            assert str(info.value) == (
                f"connection to {served.uri.location} rejected: no entry for {{'token': 'guess'}}"
            )
            assert p._pyroConnection is None
        assert served.calls() == []  # only validateHandshake ran
        assert served.log == [("handshake", {"token": "guess"})]
        assert wait_until(lambda: len(served.daemon.disconnects) == 1)


def test_default_handshake_is_hello(servertype: str) -> None:
    with serving(servertype) as served:
        with proxy(served.uri, cls=CheckingProxy) as p:
            with pytest.raises(errors.SecurityError, match="untrusted daemon: 'hello'"):
                p._pyroBind()
        assert served.log == [("handshake", "hello")]


def test_client_refuses_the_daemon(servertype: str) -> None:
    """_pyroValidateHandshake raising: the connection is closed, the error propagates, no call is made."""
    with serving(servertype) as served:
        p = proxy(served.uri, cls=CheckingProxy)
        with pytest.raises(errors.SecurityError, match="untrusted daemon"):
            p.add(1, 2)
        assert p._pyroConnection is None
        assert wait_until(lambda: len(served.daemon.disconnects) == 1)  # the daemon saw the close
        with pytest.raises(errors.SecurityError):  # every new attempt is refused again
            p.add(1, 2)
        assert p._pyroConnection is None
        assert served.calls() == []
        assert served.log == [("handshake", "hello"), ("handshake", "hello")]
        p._pyroRelease()


def test_validate_handshake_sees_the_connection(servertype: str) -> None:
    seen: list[Any] = []

    def validator(conn: Any, data: Any) -> str:
        seen.append((conn.peer_address, conn.getpeercert(), conn.handshaked))
        return "hi"

    with serving(servertype, validator=validator) as served:
        with proxy(served.uri) as p:
            assert p.add(1, 1) == 2
    (peer, cert, handshaked), = seen
    assert peer[0] == "127.0.0.1" and cert is None and handshaked is False
