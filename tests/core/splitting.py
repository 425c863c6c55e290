"""Helpers for the split-receive tests."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyroplug.core import protocol
from pyroplug.core.config import Config
from pyroplug.core.protocol import MessageReader


def read_in_pieces(wire: bytes, seed: int, reader: MessageReader | None = None) -> list[protocol.Message]:
    """Drive a reader like a socket loop (get_buffer, a random partial fill, buffer_updated)."""
    reader = reader or MessageReader()
    rnd = random.Random(seed)
    out = []
    pos = 0
    while pos < len(wire):
        buf = reader.get_buffer()
        n = min(len(buf), rnd.choice([1, 7, 100, 5000, 70_000, 1 << 20]), len(wire) - pos)
        buf[:n] = wire[pos : pos + n]
        buf.release()
        pos += n
        reader.buffer_updated(n)
        while (msg := reader.next_message()) is not None:
            out.append(msg)
    assert reader.idle
    return out


@contextmanager
def echo_daemon(servertype: str, serializer: str) -> Iterator[Any]:
    """A daemon (``servertype``, accepting ``serializer``) serving an echo object; yields its URI."""
    from pyroplug.core.daemon import Daemon
    from pyroplug.core.expose import expose

    @expose
    class Echo:
        def echo(self, *args: Any, **kwargs: Any) -> Any:
            return args[0] if len(args) == 1 and not kwargs else [list(args), kwargs]

    config = Config()
    config.SERVERTYPE = servertype
    config.SERIALIZERS_ACCEPTED = {serializer, "marshal"}
    daemon = Daemon(host="127.0.0.1", config=config)
    uri = daemon.register(Echo(), "echo")
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        yield uri
    finally:
        daemon.shutdown()
        thread.join(5)


def large_round_trips(uri: Any, serializer: str) -> None:
    """Large and small bytes values and calls with a large argument, echoed twice over one proxy."""
    from pyroplug.core.proxy import Proxy

    payloads = [os.urandom(n) for n in (protocol.SPLIT_THRESHOLD, 3 * 1024 * 1024 + 17, 100_000)]
    with Proxy(uri) as proxy:
        proxy._pyroSerializer = serializer
        for _ in range(2):
            for payload in payloads:
                result = proxy.echo(payload)
                assert type(result) is bytes and result == payload
            args, kwargs = proxy.echo(1, payloads[1], "x", key=[payloads[0][:5]])
            assert args == [1, payloads[1], "x"] and kwargs == {"key": [payloads[0][:5]]}
            assert proxy.echo("small") == "small"
