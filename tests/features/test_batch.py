"""Batch calls: one message for many calls, results as a generator, oneway and asynchronous batches."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import pyroplug
from pyroplug import errors
from pyroplug.core.batch import BatchProxy
from pyroplug.core.daemon import Daemon
from pyroplug.core.futures import FutureResult
from pyroplug.core.protocol import FLAGS_BATCH, FLAGS_ONEWAY, MSG_INVOKE
from tests.features.services import Service
from tests.features.support import serve


class CountingDaemon(Daemon):
    """Counts the INVOKE messages it handles, with their flags."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invokes: list[int] = []

    def handle_message(self, conn: Any, msg: Any) -> None:
        if msg.type == MSG_INVOKE:
            self.invokes.append(msg.flags)
        super().handle_message(conn, msg)


def test_batch_results_generator(servertype: str) -> None:
    svc = Service()
    with serve(servertype, CountingDaemon, {"svc": svc}) as served, served.proxy("svc") as p:
        assert isinstance(served.daemon, CountingDaemon)
        p._pyroBind()
        b = pyroplug.batch(p)
        assert isinstance(b, BatchProxy) and isinstance(p._pyroBatch(), BatchProxy)
        assert b.add(1, 2) is None, "calls on the batch are only queued"
        b.add("a", b="b")
        b.echo([1, {"x": None}])
        before = len(served.daemon.invokes)
        results = b()
        assert served.daemon.invokes[before:] == [FLAGS_BATCH], "one message for the whole batch"
        assert not isinstance(results, list)
        assert list(results) == [3, "ab", [1, {"x": None}]]
        assert list(b()) == [], "the batch is emptied when sent"


def test_batch_stops_at_first_failure(servertype: str) -> None:
    svc = Service()
    with serve(servertype, objects={"svc": svc}) as served, served.proxy("svc") as p:
        b = p._pyroBatch()
        b.add(1, 1)
        b.record("before")
        b.fail("second call fails")
        b.record("never")
        b.add(2, 2)
        results = b()
        assert next(results) == 2
        assert next(results) is None
        with pytest.raises(ValueError, match="second call fails") as info:
            next(results)
        assert "in fail" in "".join(getattr(info.value, "_pyroTraceback", []))
        with pytest.raises(StopIteration):
            next(results)
        assert svc.log == ["before"], "the daemon ran nothing after the failing call (oneway methods run in order)"
        assert p.add(3, 3) == 6, "the connection is fine afterwards"


def test_oneway_batch_returns_none_at_once(servertype: str) -> None:
    svc = Service()
    with serve(servertype, CountingDaemon, {"svc": svc}) as served, served.proxy("svc") as p:
        assert isinstance(served.daemon, CountingDaemon)
        with p._pyroBatch() as b:
            b.record(1)
            b.slow(0.3)
            b.record(2)
            import time

            start = time.monotonic()
            assert b(oneway=True) is None
            assert time.monotonic() - start < 0.25, "no reply is awaited"
        assert p.wait_log(2) == [1, 2]
        assert served.daemon.invokes[-2] == FLAGS_BATCH | FLAGS_ONEWAY


def test_asynchronous_batch(servertype: str) -> None:
    with serve(servertype, objects={"svc": Service()}) as served, served.proxy("svc") as p:
        b = p._pyroBatch()
        b.slow(0.1)
        b.add(40, 2)
        b.fail("late failure")
        future = b(asynchronous=True)
        assert isinstance(future, FutureResult)
        assert future.wait(10)
        results = future.value
        assert next(results) == 0.1 and next(results) == 42
        with pytest.raises(ValueError, match="late failure"):
            next(results)
        chained = p._pyroBatch()
        chained.add(1, 2)
        chained.add(3, 4)
        assert chained(asynchronous=True).then(list).then(sum).value == 10


def test_both_flags_refused_and_copy() -> None:
    with serve("thread", objects={"svc": Service()}) as served, served.proxy("svc") as p:
        b = pyroplug.batch(p)
        b.add(1, 1)
        with pytest.raises(errors.PyroError, match="async oneway calls make no sense"):
            b(oneway=True, asynchronous=True)
        b.add(2, 2)  # the refused call left the queue as it was
        twin = copy.copy(b)
        b.add(5, 5)
        assert list(twin()) == [2, 4], "a copy has the calls queued so far, and its own queue"
        assert list(b()) == [2, 4, 10]
        with pytest.raises(AttributeError):
            b.__missing_dunder__  # noqa: B018 - dunders are not batched


def test_batch_does_not_stream(servertype: str) -> None:
    """A generator returned inside a batch is not turned into an item stream (as in Pyro4)."""
    with serve(servertype, objects={"svc": Service()}) as served, served.proxy("svc") as p:
        b = p._pyroBatch()
        b.add(1, 1)
        b.gen(3)
        with pytest.raises(errors.SerializeError):
            list(b())
        assert served.daemon.streaming_responses == {}
        assert p.add(1, 1) == 2


def test_batch_refuses_unexposed_names(servertype: str) -> None:
    """An unreachable name fails the whole batch call, after the calls before it ran (as in Pyro4)."""
    svc = Service()
    with serve(servertype, objects={"svc": svc}) as served, served.proxy("svc") as p:
        b = p._pyroBatch()
        b.record("ran")
        b._private_name()
        b.record("not run")
        with pytest.raises(AttributeError, match="private"):
            b()
        assert p.wait_log(1) == ["ran"]
        assert p.add(1, 1) == 2 and svc.log == ["ran"]
