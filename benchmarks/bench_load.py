"""Throughput and load, pyroplug vs stock Pyro4 4.82: oneway calls, 32 concurrent clients, idle connections.

* **oneway throughput**: N oneway ``tick()`` calls (each bumps a counter on the server), then a sync
  ``count()`` is polled until it reaches N; calls per second including server-side completion.
  Default config on both sides (ONEWAY_THREADED on: Pyro4 starts a thread per oneway call).
* **32 client processes** (forked once per implementation, kept between rounds) each call
  ``add(i, 1)`` as fast as they can against one thread-server daemon during a common time window;
  aggregate calls per second. Default THREADPOOL_SIZE on both (Pyro4's 40 serves 32 clients).
* **1,000 idle proxies**: a helper process holds 1,000 connected, idle proxies on a pyroplug thread
  daemon; the single-client echo rate on it is compared with an identical daemon without them (target:
  the idle connections cost less than 10%). The same helper against a default Pyro4 thread daemon
  records where Pyro4 refuses (its pool of 40 workers holds one connection each).

Servers run in subprocesses (:mod:`benchmarks.server`); rounds alternate and medians are compared.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import subprocess
import sys
import time
from multiprocessing.connection import Connection as Pipe
from typing import Any

from benchmarks import Result
from benchmarks.harness import (
    REPLICAS,
    REPO,
    Server,
    interleaved,
    make_proxy,
    pinned,
    rate_for,
    save_results,
    servers,
)

NAME = "load"
ONEWAY_SERIALIZERS = ("marshal", "serpent")
ONEWAY_TARGET = 4.0
CLIENTS = 32
CLIENTS_SERIALIZER = "marshal"
CLIENTS_TARGET = 2.0
IDLE_PROXIES = 1000
IDLE_SERIALIZER = "marshal"
#: the most the idle proxies may cost: the rate with them must be at least this fraction
IDLE_KEEP = 0.9
PYRO4_PROBE = 45


# ---- oneway ------------------------------------------------------------------------------------
def oneway(quick: bool = False) -> list[Result]:
    """Oneway throughput including completion on the server (thread server, tcp, default config)."""
    rounds, seconds = (3, 0.3) if quick else (5, 0.6)
    results = []
    with servers(servertype="thread", transport="tcp") as srv:
        for serializer in ONEWAY_SERIALIZERS:
            proxies = {impl: make_proxy(impl, srv[impl].uri, serializer) for impl in srv}
            try:
                batch = {impl: _calibrate_oneway(proxies[impl], seconds) for impl in proxies}
                rates = interleaved(rounds, lambda impl, p=proxies, n=batch: _oneway_round(p[impl], n[impl]))
            finally:
                for proxy in proxies.values():
                    proxy._pyroRelease()
            case = f"oneway throughput {serializer} thread/tcp"
            results.append(Result(NAME, case, rates["pyroplug"], rates["pyro4"], ONEWAY_TARGET, "calls/s"))
            print(f"   {case}: {rates['pyroplug']:,.0f} vs {rates['pyro4']:,.0f}", flush=True)
    return results


def _oneway_round(proxy: Any, n: int) -> float:
    """Send ``n`` oneway calls, wait until the server has run them all; calls per second."""
    proxy.reset()
    tick, count = proxy.tick, proxy.count
    start = time.perf_counter()
    for _ in range(n):
        tick()
    deadline = start + 60.0
    while count() < n:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"oneway calls never completed ({count()} of {n})")
        time.sleep(0.0005)
    return n / (time.perf_counter() - start)


def _calibrate_oneway(proxy: Any, seconds: float) -> int:
    n = 200
    while True:
        rate = _oneway_round(proxy, n)
        if n / rate >= seconds / 4:
            return max(n, int(rate * seconds))
        n *= 4


# ---- 32 concurrent client processes -----------------------------------------------------------
def _client_main(impl: str, uri: str, serializer: str, pipe: Pipe) -> None:
    """A load client: connect, then per command ("run", start, stop) call add() in that window."""
    try:
        proxy = make_proxy(impl, uri, serializer)
        proxy.add(1, 1)
        pipe.send("ready")
        while True:
            if not pipe.poll(120):
                return
            command = pipe.recv()
            if command[0] != "run":
                return
            _, begin, end = command
            add = proxy.add
            clock = time.perf_counter
            while clock() < begin:
                time.sleep(0.001)
            calls = 0
            while True:
                add(calls, 1)
                if clock() >= end:
                    break
                calls += 1
            pipe.send(calls)
    except (EOFError, OSError, KeyboardInterrupt):
        return


class _ClientGroup:
    """``count`` forked client processes of one implementation, each with its own connection."""

    def __init__(self, impl: str, uri: str, count: int, serializer: str) -> None:
        ctx = multiprocessing.get_context("fork")
        self.pipes: list[Pipe] = []
        self.procs = []
        for _ in range(count):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_client_main, args=(impl, uri, serializer, theirs), daemon=True)
            proc.start()
            theirs.close()
            self.pipes.append(ours)
            self.procs.append(proc)
        for pipe in self.pipes:
            if not pipe.poll(60) or pipe.recv() != "ready":
                raise RuntimeError(f"a {impl} load client did not start")

    def round(self, seconds: float) -> float:
        """All clients call during one common window; aggregate calls per second."""
        begin = time.perf_counter() + 0.2
        end = begin + seconds
        for pipe in self.pipes:
            pipe.send(("run", begin, end))
        total = 0
        for pipe in self.pipes:
            if not pipe.poll(seconds + 60):
                raise RuntimeError("a load client did not report")
            total += pipe.recv()
        return total / seconds

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("stop",))
                pipe.close()
            except OSError:
                pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def concurrent_clients(quick: bool = False) -> list[Result]:
    """32 client processes against one thread-server daemon (tcp)."""
    rounds, seconds = (3, 0.5) if quick else (5, 1.0)
    with servers(servertype="thread", transport="tcp") as srv:
        groups: dict[str, _ClientGroup] = {}
        try:
            for impl in srv:
                groups[impl] = _ClientGroup(impl, srv[impl].uri, CLIENTS, CLIENTS_SERIALIZER)
            for group in groups.values():
                group.round(0.2)  # warm up
            rates = interleaved(rounds, lambda impl: groups[impl].round(seconds))
        finally:
            for group in groups.values():
                group.close()
    case = f"{CLIENTS} client processes {CLIENTS_SERIALIZER} thread/tcp"
    print(f"   {case}: {rates['pyroplug']:,.0f} vs {rates['pyro4']:,.0f}", flush=True)
    return [Result(NAME, case, rates["pyroplug"], rates["pyro4"], CLIENTS_TARGET, "calls/s")]


# ---- idle connections -------------------------------------------------------------------------
class _IdleHolder:
    """The helper process (:mod:`benchmarks.idle_clients`) holding idle proxies to one daemon."""

    def __init__(self, impl: str, uri: str, count: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.idle_clients", "--impl", impl, "--uri", uri, "--count", str(count),
             "--serializer", IDLE_SERIALIZER],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        self.status = self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class IdleResult(Result):
    """The idle-connection case: both rates are pyroplug's (with and without the idle proxies)."""


def idle_connections(quick: bool = False) -> tuple[list[Result], dict[str, Any]]:
    """Echo rate of a pyroplug thread daemon with and without 1,000 idle proxies; Pyro4's refusal."""
    rounds, seconds = (3, 0.3) if quick else (6, 0.4)
    extra: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(pinned())
        # several server processes per side, rounds rotating over them (see harness.replicas)
        plain = [stack.enter_context(Server("pyroplug", "thread", "tcp")) for _ in range(REPLICAS)]
        loaded = [stack.enter_context(Server("pyroplug", "thread", "tcp")) for _ in range(REPLICAS)]
        holders = [_IdleHolder("pyroplug", server.uri, IDLE_PROXIES) for server in loaded]
        for holder in holders:
            stack.callback(holder.close)
        extra["pyroplug_idle_helper"] = holders[0].status
        for holder in holders:
            if holder.status != f"ok {IDLE_PROXIES}":
                raise RuntimeError(f"pyroplug did not take {IDLE_PROXIES} idle proxies: {holder.status}")
        proxies = [
            {"without": make_proxy("pyroplug", bare.uri, IDLE_SERIALIZER),
             "with": make_proxy("pyroplug", busy.uri, IDLE_SERIALIZER)}
            for bare, busy in zip(plain, loaded, strict=True)
        ]
        for pair in proxies:
            stack.callback(pair["without"]._pyroRelease)
            stack.callback(pair["with"]._pyroRelease)
        payload = b"x" * 100
        for pair in proxies:
            for proxy in pair.values():
                assert proxy.echo(payload) == payload
        turns = {"without": itertools.count(), "with": itertools.count()}

        def one(which: str) -> float:
            proxy = proxies[next(turns[which]) % len(proxies)][which]
            return rate_for(lambda: proxy.echo(payload), seconds)

        rates = interleaved(rounds, one, ("without", "with"))
    kept = rates["with"] / rates["without"]
    case = f"echo with {IDLE_PROXIES} idle proxies (vs none) thread/tcp"
    note = f"both pyroplug; cost {100 * (1 - kept):.1f}% (target < {100 * (1 - IDLE_KEEP):.0f}%)"
    results: list[Result] = [IdleResult(NAME, case, rates["with"], rates["without"], IDLE_KEEP, "calls/s", note)]
    print(f"   {case}: {rates['with']:,.0f} with, {rates['without']:,.0f} without ({note})", flush=True)

    with Server("pyro4", "thread", "tcp") as pyro4:
        holder = _IdleHolder("pyro4", pyro4.uri, PYRO4_PROBE)
        holder.close()
    extra["pyro4_idle_helper"] = holder.status
    accepted = int(holder.status.split()[1]) if holder.status.split()[:1] in (["ok"], ["refused"]) else 0
    message = holder.status.split(" ", 2)[2] if holder.status.startswith("refused") else holder.status
    note = f"Pyro4 refused proxy #{accepted + 1}: {message}" if holder.status.startswith("refused") else message
    results.append(Result(NAME, "idle proxies held by a default thread daemon", float(IDLE_PROXIES), float(accepted),
                          None, "proxies", note))
    print(f"   Pyro4 4.82 default thread daemon: {note}", flush=True)
    return results, extra


def run(quick: bool = False) -> list[Result]:
    """Oneway throughput, 32 concurrent clients, idle connections; also saved to results/latest.json."""
    results = oneway(quick) + concurrent_clients(quick)
    idle, extra = idle_connections(quick)
    results += idle
    save_results(NAME, results, {"quick": quick, **extra})
    return results


if __name__ == "__main__":
    from benchmarks.__main__ import format_table

    print(format_table(run()))
