"""In-process pyroplug proxies against the stock ``python -m Pyro4.test.echoserver`` program (tcp and unix).

Unlike the driver-based tests, these assert on real pyroplug objects: the exception classes a pyroplug
proxy raises for a stock daemon's errors, its remote tracebacks, its stream iterator and so on.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

import pyroplug
from pyroplug import errors
from pyroplug.core.config import Config
from pyroplug.core.tracebacks import getPyroTraceback
from pyroplug.testing.interop import Peer, short_socket_path
from tests.interop.support import ALL_ACCEPTED, SERIALIZERS

pytestmark = pytest.mark.interop

ECHO_METHODS = {"echo", "error", "error_with_text", "oneway_echo", "slow", "generator", "nan", "inf",
                "oneway_slow", "shutdown", "__dunder__"}


def _start_echoserver(*args: str) -> tuple[Peer, str]:
    peer = Peer([sys.executable, "-m", "Pyro4.test.echoserver", *args], env=ALL_ACCEPTED, ready=None,
                name="Pyro4.test.echoserver")
    try:
        line = peer.wait_for("echo uri: ", 30)
    except BaseException:
        peer.stop()
        raise
    return peer, line.partition("echo uri: ")[2].strip()


@pytest.fixture(scope="module")
def echoservers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The stock echo server on 127.0.0.1 and on a unix socket; stopped through its own shutdown() method."""
    sock = short_socket_path(tmp_path_factory.mktemp("echo"), "echo.sock")
    started: list[tuple[Peer, str]] = []
    try:
        started.append(_start_echoserver("-H", "127.0.0.1"))
        started.append(_start_echoserver("-u", sock))
        yield {"tcp": started[0][1], "unix": started[1][1]}
        for peer, uri in started:  # the stock way to stop it: a remote call, then its loop ends
            with pyroplug.Proxy(uri) as echo:
                echo.shutdown()
            peer.proc.wait(10)
            assert peer.proc.returncode == 0, peer.describe()
    finally:
        for peer, _ in started:
            peer.stop()


def proxy_for(uri: str, ser: str) -> pyroplug.Proxy:
    cfg = Config()
    cfg.SERIALIZER = ser
    cfg.COMMTIMEOUT = 10.0
    return pyroplug.Proxy(uri, config=cfg)


@pytest.fixture(params=["tcp", "unix"])
def echo_uri(request: pytest.FixtureRequest, echoservers: dict[str, str]) -> str:
    return echoservers[request.param]


@pytest.mark.parametrize("ser", SERIALIZERS)
def test_echoserver_calls(echo_uri: str, ser: str) -> None:
    value: Any = {"text": "h\u00e9llo", "n": [1, 2.5, -(2**70)], "nested": {"t": True, "none": None}}
    with proxy_for(echo_uri, ser) as echo:
        assert echo.echo(value) == value
        assert echo.echo("x") == "x"
        assert set(echo._pyroMethods) == ECHO_METHODS
        assert echo._pyroOneway == {"oneway_echo", "oneway_slow"}
        assert echo._pyroAttrs == {"verbose"}
        assert math.isnan(echo.nan())  # serpent sends NaN as {'__class__': 'float', 'value': 'nan'}
        assert echo.inf() == float("inf")
        assert echo.__dunder__() == "should be allowed (dunder)"
        start = time.time()
        assert echo.oneway_echo("fire and forget") is None
        assert time.time() - start < 2
        assert list(echo.generator()) == ["one", "two", "three"]
        with pytest.raises(ValueError) as info:
            echo.error()
        assert info.value.args == ("expected error from echoserver error() method",)
        remote = "".join(info.value._pyroTraceback)
        assert "echoserver.py" in remote and "in error" in remote
        text = "".join(getPyroTraceback(type(info.value), info.value, info.value.__traceback__))
        assert "Remote traceback" in text and "in error" in text
        with pytest.raises(ValueError, match="the message of the error"):
            echo.error_with_text()
        assert echo.verbose is False  # properties: works with marshal too (Pyro4's own client can't)
        echo.verbose = False
        with pytest.raises(AttributeError):
            echo._private()


def test_daemon_object_of_the_echoserver(echoservers: dict[str, str]) -> None:
    location = echoservers["tcp"].partition("@")[2]
    with pyroplug.Proxy(f"PYRO:Pyro.Daemon@{location}") as d:
        assert set(d.registered()) == {"Pyro.Daemon", "test.echoserver"}
        assert d.ping() is None
        info = d.info()
        assert info.startswith(f"Pyro.Daemon bound on {location}, NAT None, 2 objects registered. Servertype: ")
        assert "SocketServer_Multiplex" in info  # the echo server forces SERVERTYPE multiplex
        meta = d.get_metadata("test.echoserver")
        assert meta["methods"] == ECHO_METHODS and meta["oneway"] == {"oneway_echo", "oneway_slow"}
        with pytest.raises(errors.DaemonError, match="unknown object"):
            d.get_metadata("nope")


def test_pyroplug_error_classes_for_stock_daemon_errors(echoservers: dict[str, str]) -> None:
    location = echoservers["tcp"].partition("@")[2]
    with pytest.raises(errors.CommunicationError, match="rejected: unknown object"):
        pyroplug.Proxy(f"PYRO:no.such.object@{location}")._pyroBind()
    cfg = Config()
    cfg.METADATA = False
    with pyroplug.Proxy(f"PYRO:no.such.object@{location}", config=cfg) as p:
        with pytest.raises(errors.DaemonError, match="unknown object"):
            p.anything()
    with proxy_for(echoservers["tcp"], "json") as echo, pytest.raises(errors.SerializeError):
        echo.echo(b"json has no bytes")
