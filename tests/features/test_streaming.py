"""Item streaming: generators and iterators stream their items; lifetime, linger, close, refusal."""

from __future__ import annotations

import gc
import time
from typing import Any

import pytest

from pyroplug import errors
from pyroplug.core.daemon import Daemon
from pyroplug.core.protocol import MSG_INVOKE
from pyroplug.core.streams import StreamResultIterator
from tests.features.services import Service
from tests.features.support import serve, wait_until


class CallCountingDaemon(Daemon):
    """Counts INVOKE messages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invokes = 0

    def handle_message(self, conn: Any, msg: Any) -> None:
        if msg.type == MSG_INVOKE:
            self.invokes += 1
        super().handle_message(conn, msg)


def test_generators_and_iterators_stream_item_by_item(servertype: str) -> None:
    svc = Service()
    with serve(servertype, CallCountingDaemon, {"svc": svc}) as served, served.proxy("svc") as p:
        daemon = served.daemon
        assert isinstance(daemon, CallCountingDaemon)
        p._pyroBind()
        before = daemon.invokes
        it = p.gen(3)
        assert isinstance(it, StreamResultIterator) and iter(it) is it
        assert len(daemon.streaming_responses) == 1
        assert daemon.invokes == before + 1
        assert next(it) == 0
        assert daemon.invokes == before + 2, "one get_next_stream_item call per item"
        assert list(it) == [1, 2]
        assert daemon.streaming_responses == {}, "exhausted: the daemon dropped the stream"
        assert svc.generators_closed == ["gen"]
        assert list(p.iterator(3)) == ["0", "1", "2"]
        assert list(p.gen(0)) == []


def test_error_inside_the_stream(servertype: str) -> None:
    with serve(servertype, objects={"svc": Service()}) as served, served.proxy("svc") as p:
        it = p.gen_fail(1)
        assert next(it) == 0
        with pytest.raises(ValueError, match="stream broke") as info:
            next(it)
        assert "in gen_fail" in "".join(getattr(info.value, "_pyroTraceback", []))
        assert served.daemon.streaming_responses == {}
        with pytest.raises(errors.PyroError, match="item stream terminated"):
            next(it)


def test_early_close_removes_the_server_side_stream(servertype: str) -> None:
    svc = Service()
    with serve(servertype, objects={"svc": svc}) as served, served.proxy("svc") as p:
        daemon = served.daemon
        it = p.gen(1000, "closed early")
        assert [next(it), next(it)] == [0, 1]
        it.close()
        assert wait_until(lambda: daemon.streaming_responses == {}), "close_stream (oneway) reached the daemon"
        assert svc.generators_closed == ["closed early"], "and the generator was closed (its finally ran)"
        with pytest.raises(StopIteration):
            next(it)
        it.close()  # twice is fine
        abandoned = p.gen(1000, "garbage collected")
        next(abandoned)
        del abandoned
        gc.collect()
        assert wait_until(lambda: daemon.streaming_responses == {}), "an iterator that is garbage collected closes too"
        assert p.add(1, 1) == 2


def test_close_after_the_proxy_moved_on(servertype: str) -> None:
    """close() while the proxy made other calls since: sent from a clone (the seq moved on)."""
    svc = Service()
    with serve(servertype, objects={"svc": svc}) as served, served.proxy("svc") as p:
        it = p.gen(100, "moved on")
        next(it)
        assert p.add(1, 2) == 3
        it.close()
        assert wait_until(lambda: served.daemon.streaming_responses == {})
        assert p.add(2, 2) == 4


def test_streaming_off(servertype: str) -> None:
    with serve(servertype, objects={"svc": Service()}, ITER_STREAMING=False) as served, served.proxy("svc") as p:
        with pytest.raises(errors.ProtocolError, match="not configured to allow streaming"):
            p.gen(3)
        assert served.daemon.streaming_responses == {}
        assert p.add(1, 1) == 2


def test_lazy_dict_views_refused(servertype: str) -> None:
    with serve(servertype, objects={"svc": Service()}) as served, served.proxy("svc") as p:
        for method in (p.keys_view, p.values_view, p.items_view):
            with pytest.raises(errors.PyroError, match="lazy dict iterators"):
                method()
        assert served.daemon.streaming_responses == {}


def test_stream_lifetime(servertype: str) -> None:
    with serve(servertype, objects={"svc": Service()}, ITER_STREAM_LIFETIME=0.3) as served, served.proxy("svc") as p:
        it = p.gen(100)
        assert next(it) == 0
        assert wait_until(lambda: served.daemon.streaming_responses == {}, 5), "housekeeping expired it"
        with pytest.raises(errors.PyroError, match="item stream terminated"):
            next(it)


def test_linger_then_resume_after_reconnect(servertype: str) -> None:
    svc = Service()
    with serve(servertype, objects={"svc": svc}, ITER_STREAM_LINGER=5.0) as served, served.proxy("svc") as p:
        daemon = served.daemon
        it = p.gen(5, "resumed")
        assert [next(it), next(it)] == [0, 1]
        stream_id = it.streamId
        p._pyroRelease()
        with pytest.raises(errors.ConnectionClosedError, match="proxy for this stream result has been closed"):
            next(it)
        assert wait_until(lambda: daemon.streaming_responses.get(stream_id, [1])[0] is None), "the stream lingers"
        p._pyroReconnect()
        assert list(it) == [2, 3, 4], "the stream resumes over the new connection"
        assert svc.generators_closed == ["resumed"]


def test_linger_expires(servertype: str) -> None:
    svc = Service()
    with serve(servertype, objects={"svc": svc}, ITER_STREAM_LINGER=0.2) as served, served.proxy("svc") as p:
        it = p.gen(5, "expired")
        next(it)
        p._pyroRelease()
        assert wait_until(lambda: served.daemon.streaming_responses == {}, 5)
        assert svc.generators_closed == ["expired"]
        p._pyroReconnect()
        with pytest.raises(errors.PyroError, match="item stream terminated"):
            next(it)


def test_no_linger_drops_streams_at_disconnect(servertype: str) -> None:
    with serve(servertype, objects={"svc": Service()}, ITER_STREAM_LINGER=0) as served, served.proxy("svc") as p:
        it = p.gen(5)
        next(it)
        p._pyroRelease()
        assert wait_until(lambda: served.daemon.streaming_responses == {})


def test_stream_survives_other_calls_in_between(servertype: str) -> None:
    with serve(servertype, objects={"svc": Service()}) as served, served.proxy("svc") as p:
        a = p.gen(3, "a")
        b = p.iterator(3)
        out = []
        for x, y in zip(a, b, strict=True):
            out.append((x, y, p.add(x, 1)))
        assert out == [(0, "0", 1), (1, "1", 2), (2, "2", 3)]
        start = time.monotonic()
        assert sum(p.gen(200)) == sum(range(200))
        assert time.monotonic() - start < 5
