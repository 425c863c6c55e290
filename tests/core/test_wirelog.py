"""LOGWIRE logs every message both ends send and receive, over a real connection."""

from __future__ import annotations

import logging
import threading

import pytest

from pyroplug.core.config import Config
from pyroplug.core.daemon import Daemon
from pyroplug.core.proxy import Proxy


class Echo:
    def echo(self, value: object) -> object:
        return value


@pytest.mark.parametrize("servertype", ["thread", "multiplex"])
def test_logwire_logs_both_directions(servertype: str, caplog: pytest.LogCaptureFixture) -> None:
    cfg = Config()
    cfg.SERVERTYPE = servertype
    cfg.LOGWIRE = True
    caplog.set_level(logging.DEBUG, logger="pyroplug.wire")
    with Daemon(host="127.0.0.1", config=cfg) as daemon:
        uri = daemon.register(Echo(), "echo")
        thread = threading.Thread(target=daemon.requestLoop, daemon=True)
        thread.start()
        with Proxy(uri, config=cfg) as proxy:
            assert proxy.echo("hello-wire") == "hello-wire"
        daemon.shutdown()
        thread.join(5)
    lines = [r.getMessage() for r in caplog.records if r.name == "pyroplug.wire"]
    for who, direction in (("proxy", "sending"), ("daemon", "received"), ("daemon", "sending"), ("proxy", "received")):
        assert any(line.startswith(f"{who} wiredata {direction}") and "hello-wire" in line for line in lines), (who, direction)
    assert any("msgtype=1 " in line for line in lines)  # the CONNECT is logged too


def test_logwire_off_installs_nothing() -> None:
    cfg = Config()
    with Daemon(host="127.0.0.1", config=cfg) as daemon:
        assert "handle_message" not in vars(daemon)
